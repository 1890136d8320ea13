"""Composition and the ledger, end to end: FedHypeVAE clients train for two rounds and
release their statistics; every client's reported ε is recomputed by a fresh Opacus
accountant from the mechanisms it actually ran."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedsim.algorithms.fedhypevae import FedHypeVAEClient, FedHypeVAEServer
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.federation import ClientData
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.ledger import NO_DP_NOTE, PAPER_MODE_NOTE, format_ledger, ledger_to_json
from privacy_testkit import opacus_epsilon, CLASSES, DIM, TINY

ROUNDS, BATCH = 2, 16
N_TRAIN = (80, 64)
MAX_RECORDS = 96  # the public bound the plans use (never n_i)


def _client_data(client_id: int, n_train: int) -> ClientData:
    rng = np.random.default_rng(100 + client_id)

    def split(n):
        y = np.arange(n) % CLASSES
        x = (rng.normal(size=(n, DIM)) + 2.0 * np.eye(CLASSES, DIM)[y]).astype(np.float32)
        return x, y.astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = split(n_train), split(12), split(12)
    return ClientData(client_id, xt, yt, xv, yv, xs, ys, CLASSES)


def run_clients(privacy: PrivacyConfig, seed: int = 0):
    """Two clients, two rounds (server aggregation included), then the release."""
    spec = FederationSpec(2, CLASSES, DIM)
    schedule = TrainingConfig(rounds=ROUNDS, batch_size=BATCH)
    server = FedHypeVAEServer(spec, TINY, seed)
    clients = [FedHypeVAEClient(_client_data(i, n), spec, TINY, privacy, schedule, EvaluationConfig(), seed)
               for i, n in enumerate(N_TRAIN)]
    for round_index in range(ROUNDS):
        broadcast = server.broadcast()
        server.aggregate([c.local_round(broadcast, round_index)[0] for c in clients])
    for client in clients:
        client.release()
    return clients


@pytest.mark.parametrize("accountant", ["rdp", pytest.param("prv", marks=pytest.mark.slow)])  # PRV: ~15 s
def test_ledger_epsilon_is_the_composed_epsilon_of_what_each_client_ran(accountant):
    privacy = PrivacyConfig(epsilon=2.0, delta=1e-4, clip_norm=1.0, accountant=accountant,
                            stats_epsilon_fraction=0.25, max_records=MAX_RECORDS, reserved_rounds=0)
    clients = run_clients(privacy)
    records = [c.privacy_record() for c in clients]
    for client, record, n in zip(clients, records, N_TRAIN):
        q = BATCH / MAX_RECORDS  # planned from the public bound, the same for both clients
        steps = ROUNDS * math.ceil(MAX_RECORDS / BATCH)  # the steps the client really ran
        sigma = client.privacy_state.plan.noise_multiplier
        assert sigma > 0 and record.noise_multiplier == sigma
        assert record.sample_rate == pytest.approx(q) and record.steps == steps
        sigma_stats = record.stats_noise_multiplier
        assert sigma_stats is not None and sigma_stats > 0
        # the history is exactly the mechanisms run: T DP-SGD steps, one q = 1 release
        assert record.history == ((sigma, pytest.approx(q), steps), (sigma_stats, 1.0, 1))

        total = opacus_epsilon([(sigma, q, steps), (sigma_stats, 1.0, 1)], 1e-4, accountant)
        assert record.epsilon_total == pytest.approx(total, rel=1e-9)
        assert record.epsilon_total <= privacy.epsilon
        assert record.epsilon_total >= 0.98 * privacy.epsilon  # the release uses what DP-SGD left
        sgd = opacus_epsilon([(sigma, q, steps)], 1e-4, accountant)
        assert record.epsilon_dp_sgd == pytest.approx(sgd, rel=1e-9)
        assert record.epsilon_dp_sgd <= privacy.epsilon * (1 - privacy.stats_epsilon_fraction) + 0.01
        assert record.epsilon_statistics == pytest.approx(opacus_epsilon([(sigma_stats, 1.0, 1)], 1e-4, accountant),
                                                          rel=1e-9)
        assert record.epsilon_total > max(record.epsilon_dp_sgd, record.epsilon_statistics)  # composed, not max
        assert record.stats_clip_norm == pytest.approx(math.sqrt(DIM))

    document = ledger_to_json(records)
    json.dumps(document, allow_nan=False)  # valid JSON, no bare Infinity
    assert document["epsilon_max"] == max(r.epsilon_total for r in records)
    assert document["note"] == ""
    assert all(row["covers_local_state"] for row in document["clients"])
    assert "NOTE" not in format_ledger(records)


def test_paper_mode_ledger_says_epsilon_does_not_cover_the_local_state():
    privacy = PrivacyConfig(epsilon=2.0, delta=1e-4, privacy_mode="paper")
    records = [c.privacy_record() for c in run_clients(privacy)]
    document = ledger_to_json(records)
    note = document["note"]
    assert note == PAPER_MODE_NOTE
    assert "NOT" in note and "local state" in note and "paper" in note
    assert all(row["privacy_mode"] == "paper" and row["covers_local_state"] is False
               for row in document["clients"])
    assert "NOTE: " + PAPER_MODE_NOTE in format_ledger(records)
    # its ε is still the composed ε of the noised mechanisms
    for record in records:
        assert record.epsilon_total == pytest.approx(opacus_epsilon(record.history, 1e-4, "rdp"), rel=1e-9)


def test_infinite_epsilon_is_reported_as_inf_and_no_dp():
    clients = run_clients(PrivacyConfig(epsilon=math.inf))
    records = [c.privacy_record() for c in clients]
    for client, record, n in zip(clients, records, N_TRAIN):
        assert math.isinf(record.epsilon_total) and math.isinf(record.epsilon_dp_sgd)
        assert record.privacy_mode == "none" and record.noise_multiplier == 0.0
        # the steps really run, recorded without noise (σ = 0): the accountant itself reads ∞
        assert record.history == ((0.0, pytest.approx(BATCH / n), ROUNDS * math.ceil(n / BATCH)),)
        assert math.isinf(client.privacy_state.epsilon())
    document = ledger_to_json(records)
    text = json.dumps(document, allow_nan=False)
    assert document["epsilon_max"] == "inf" and document["note"] == NO_DP_NOTE
    assert all(row["epsilon_total"] == "inf" and row["target_epsilon"] == "inf" for row in document["clients"])
    assert "Infinity" not in text
