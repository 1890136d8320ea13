"""Distributed noise (``--privacy.noise-placement aggregate``, :mod:`fedsim.privacy.aggregate`):
the noise of the server's sum measured empirically against σ_s·√3 (per normalised
coordinate, around a per-record recomputation), dropouts refused or never below σ_s,
the ledger's ε of a mixed history against fresh Opacus accountants, and the refusals."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from fedsim.algorithms.dp_stats import DPStatsConfig, DPStatsServer, pooled_statistics
from fedsim.algorithms.fedhypevae import (
    FedHypeVAEClient,
    FedHypeVAEConfig,
    FedHypeVAEServer,
)
from fedsim.algorithms.registry import RunSettings, algorithm_module, method
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.commands.train import TrainCommand
from fedsim.data.federation import ClientData
from fedsim.errors import UserError
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.aggregate import (
    CohortTooSmall,
    check_noise_placement,
    resolved_min_cohort,
)
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.coverage import DP_AGGREGATE, coverage
from fedsim.privacy.ledger import ledger_note, ledger_to_json
from fedsim.privacy.statistics import SENSITIVITY

DIM, CLASSES, RADIUS = 4, 3, 2.0


def client_data(client_id: int, n: int = 30) -> ClientData:
    rng = np.random.default_rng(client_id)
    y = (np.arange(n) % CLASSES).astype(np.int64)
    x = (1.5 * np.eye(DIM)[y] + rng.normal(size=(n, DIM))).astype(np.float32)
    return ClientData(client_id, x, y, x[:6], y[:6], x[6:12], y[6:12], CLASSES)


def normalised(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``[N, S/R, diag M/R²]`` recomputed record by record (independent of fedsim's code)."""
    counts, sums, second = np.zeros(CLASSES), np.zeros((CLASSES, DIM)), np.zeros((CLASSES, DIM))
    for record, label in zip(x.astype(np.float64), y):
        clipped = record * min(1.0, RADIUS / float(np.linalg.norm(record)))
        counts[label] += 1
        sums[label] += clipped / RADIUS
        second[label] += clipped * clipped / RADIUS**2
    return np.concatenate([counts, sums.ravel(), second.ravel()])


def dp_stats_clients(num_clients: int, privacy: PrivacyConfig, seed: int):
    settings = RunSettings("dp-stats", DPStatsConfig(clip_norm=RADIUS), privacy, TrainingConfig(rounds=1),
                           EvaluationConfig(), seed)
    spec = FederationSpec(num_clients, CLASSES, DIM)
    module = algorithm_module("dp-stats")
    return [module.make_client(client_data(i), spec, settings) for i in range(num_clients)]


def as_vector(statistics) -> np.ndarray:
    return np.concatenate([statistics.counts.numpy(), statistics.sums.numpy().ravel() / RADIUS,
                           statistics.second_moments.numpy().ravel() / RADIUS**2])


AGGREGATE = PrivacyConfig(epsilon=2.0, reproducible_noise=True, noise_placement="aggregate")


def residuals(num_clients: int, privacy: PrivacyConfig, subsets: dict[str, list[int]], draws: int):
    """Per subset of clients: the residuals of the summed releases around the exact sum
    over ``draws`` runs (one seed each), and the σ_s the accountants charged."""
    exact = [normalised(client_data(i).x_train, client_data(i).y_train) for i in range(num_clients)]
    found: dict[str, list[np.ndarray]] = {name: [] for name in subsets}
    charged = set()
    for seed in range(draws):
        clients = dp_stats_clients(num_clients, privacy, seed)
        releases = [c.release() for c in clients]
        charged |= {c.privacy_state.accountant.history[0][0] for c in clients}
        for name, ids in subsets.items():
            total = pooled_statistics([releases[i] for i in ids])
            found[name].append(as_vector(total) - sum(exact[i] for i in ids))
    (sigma,) = charged
    return {name: np.concatenate(values) for name, values in found.items()}, sigma


def test_the_summed_noise_std_is_sigma_and_a_single_share_is_sigma_over_root_m():
    """Four clients, default m_min = 4: the sum's noise has std σ_s·√3 (the accountant's σ_s)
    on every normalised coordinate, one client's own release σ_s·√3/2."""
    found, sigma = residuals(4, AGGREGATE, {"sum": [0, 1, 2, 3]}, draws=150)
    values = found["sum"]
    tolerance = 5 / math.sqrt(2 * len(values))  # 5 standard errors of a std
    assert abs(values.mean()) < 4 * sigma * SENSITIVITY / math.sqrt(len(values))
    assert np.std(values) == pytest.approx(sigma * SENSITIVITY, rel=tolerance)


def test_one_share_alone_is_refused_and_carries_sigma_over_root_m():
    clients = dp_stats_clients(4, AGGREGATE, seed=0)
    release = clients[0].release()
    sigma = clients[0].privacy_state.accountant.history[0][0]
    assert release.noise_multiplier == pytest.approx(sigma / 2) and release.min_cohort == 4
    with pytest.raises(CohortTooSmall, match="--privacy.min-cohort 4"):
        pooled_statistics([release])


def residuals_of_one_share(draws: int) -> tuple[np.ndarray, float]:
    exact = normalised(client_data(0).x_train, client_data(0).y_train)
    values = []
    for seed in range(draws):
        client = dp_stats_clients(4, AGGREGATE, seed)[0]
        values.append(as_vector(client.release().statistics) - exact)
        sigma = client.privacy_state.accountant.history[0][0]
    return np.concatenate(values), sigma


def test_one_share_has_noise_std_sigma_over_root_m():
    values, sigma = residuals_of_one_share(draws=150)
    assert np.std(values) == pytest.approx(sigma * SENSITIVITY / 2, rel=5 / math.sqrt(2 * len(values)))


def test_a_dropped_client_never_lowers_the_noise_below_sigma():
    """m_min = 3 of 4 clients: a sum of 3 carries σ_s, of 4 carries σ_s·√(4/3) (conservative);
    a sum of 2 is refused by the server, as is one client short of the default m_min."""
    privacy = dataclasses.replace(AGGREGATE, min_cohort=3)
    found, sigma = residuals(4, privacy, {"three": [0, 2, 3], "four": [0, 1, 2, 3]}, draws=150)
    for name, expected in (("three", 1.0), ("four", math.sqrt(4 / 3))):
        values = found[name]
        assert np.std(values) == pytest.approx(sigma * SENSITIVITY * expected, rel=5 / math.sqrt(2 * len(values)))
        assert np.std(values) >= sigma * SENSITIVITY * (1 - 5 / math.sqrt(2 * len(values)))
    releases = [c.release() for c in dp_stats_clients(4, privacy, seed=0)]
    server = DPStatsServer(FederationSpec(4, CLASSES, DIM), DPStatsConfig(clip_norm=RADIUS))
    server.finalize(releases[:3])
    with pytest.raises(CohortTooSmall):
        server.finalize(releases[:2])
    every = [c.release() for c in dp_stats_clients(4, AGGREGATE, seed=0)]  # default m_min: all 4
    with pytest.raises(CohortTooSmall):
        server.finalize(every[1:])


CONFIG = FedHypeVAEConfig(hidden_dim=16, latent_dim=4, code_dim=4, hyper_hidden=8, label_dim=4, mmd_samples=4,
                          warm_start_steps=5, warm_start_batch=32, meta_steps=5, statistics_share=0.5)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_fedhypevae_mixed_history_ledger_is_opacus(accountant):
    """Statistics at aggregate placement (σ_s recorded, σ_s/√m added), DP-SGD at client
    placement: the ledger's ε is a fresh Opacus accountant's for the mixed history, ≤ target."""
    spec = FederationSpec(num_clients=3, num_classes=CLASSES, dim=DIM)
    privacy = dataclasses.replace(AGGREGATE, accountant=accountant, clip_norm=0.5, max_records=64)
    clients = [FedHypeVAEClient(client_data(i), spec, CONFIG, privacy, TrainingConfig(rounds=1, batch_size=32),
                                EvaluationConfig(), seed=0) for i in range(3)]
    releases = [c.release_once() for c in clients]
    server = FedHypeVAEServer(spec, CONFIG, seed=0)
    server.warm_start(releases)
    updates = [c.local_round(server.broadcast(), 0)[0] for c in clients]
    server.aggregate(updates)
    with pytest.raises(CohortTooSmall):
        server.finalize(releases[:2])
    server.finalize(releases)
    record = clients[0].privacy_record()
    sigma_s = record.stats_noise_multiplier
    assert releases[0].noise_multiplier == pytest.approx(sigma_s / math.sqrt(3))
    assert record.stats_client_noise_multiplier == pytest.approx(sigma_s / math.sqrt(3))
    assert (record.stats_noise_placement, record.min_cohort) == ("aggregate", 3)
    history = [tuple(entry) for entry in record.history]
    assert (sigma_s, 1.0, 1) in history and record.steps > 0
    fresh = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    fresh.history = [(float(s), float(q), int(t)) for s, q, t in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = float(fresh.get_epsilon(record.delta))
    assert record.epsilon_total == pytest.approx(expected, rel=1e-6)
    assert record.epsilon_total <= privacy.epsilon
    ledger = ledger_to_json([c.privacy_record() for c in clients])
    assert "noise_placement=aggregate (min_cohort=3)" in ledger["note"]
    assert ledger["clients"][0]["stats_noise_placement"] == "aggregate"


def test_client_placement_is_unchanged():
    clients = dp_stats_clients(3, dataclasses.replace(AGGREGATE, noise_placement="client"), seed=0)
    release = clients[0].release()
    record = clients[0].privacy_record()
    assert release.noise_multiplier == record.stats_noise_multiplier and release.min_cohort == 1
    assert record.stats_noise_placement == "client" and record.min_cohort is None
    assert "noise_placement" not in ledger_note([record])


@pytest.mark.parametrize("algorithm", ["fedavg", "fedprox", "fedlambda", "dp-fedavg", "dp-fedprox",
                                       "dp-cvae", "dp-cgan"])
def test_dp_sgd_methods_refuse_aggregate_placement(algorithm):
    command = TrainCommand(algorithm=algorithm, backend="local", privacy=AGGREGATE)
    with pytest.raises(UserError, match="--privacy.noise-placement aggregate applies to the pooled"):
        command.validate()


@pytest.mark.parametrize("algorithm", ["dp-stats", "fedhypevae"])
def test_statistics_methods_accept_aggregate_placement(algorithm):
    check_noise_placement(method(algorithm), AGGREGATE)


@pytest.mark.parametrize("changes,option", [({"noise_placement": "server"}, "--privacy.noise-placement"),
                                            ({"min_cohort": 0, "noise_placement": "aggregate"},
                                             "--privacy.min-cohort"),
                                            ({"min_cohort": 2}, "--privacy.min-cohort")])
def test_invalid_options_name_the_option(changes, option):
    with pytest.raises(UserError, match=option):
        PrivacyConfig(**changes).validate()


def test_min_cohort_above_the_federation_is_refused():
    assert resolved_min_cohort(AGGREGATE, 5) == 5
    assert resolved_min_cohort(dataclasses.replace(AGGREGATE, min_cohort=2), 5) == 2
    assert resolved_min_cohort(PrivacyConfig(), 5) == 1
    with pytest.raises(UserError, match="--privacy.min-cohort must be at most the federation's 5 clients"):
        resolved_min_cohort(dataclasses.replace(AGGREGATE, min_cohort=6), 5)


def test_coverage_labels_the_statistics_dp_aggregate():
    secure = dataclasses.replace(AGGREGATE, reproducible_noise=False)
    command = TrainCommand(algorithm="dp-stats", backend="local", privacy=secure)
    statuses = {entry["output"]: entry["status"] for entry in coverage(command, releases_synthetic=True)}
    shares = [name for name, status in statuses.items() if status == DP_AGGREGATE]
    assert len(shares) == 1 and "only their sum" in shares[0]
    assert statuses["synthetic.parquet"] == "dp"
    plain = TrainCommand(algorithm="dp-stats", backend="local", privacy=PrivacyConfig())
    assert DP_AGGREGATE not in {entry["status"] for entry in coverage(plain, releases_synthetic=True)}


def small_command(tmp_path, **privacy):
    from fedsim.data.federation import DataConfig

    data = DataConfig(num_clients=3)
    data = dataclasses.replace(data, synthetic=dataclasses.replace(data.synthetic, n_samples=600, dim=16))
    return TrainCommand(algorithm="dp-stats", backend="local", progress=False, checkpoint_every=0, threads=1,
                        training=TrainingConfig(rounds=1), data=data, out=tmp_path / "run",
                        privacy=PrivacyConfig(epsilon=2.0, noise_placement="aggregate", **privacy))


def test_a_run_states_the_trust_model_in_every_output(tmp_path):
    import json

    from fedsim.commands.training_run import run_training

    run_training(small_command(tmp_path))
    ledger = json.loads((tmp_path / "run" / "privacy.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "noise_placement=aggregate (min_cohort=3)" in ledger["note"] == summary["privacy_note"]
    assert DP_AGGREGATE in {entry["status"] for entry in summary["coverage"]}
    for row in ledger["clients"]:
        assert (row["stats_noise_placement"], row["min_cohort"]) == ("aggregate", 3)
        assert row["stats_client_noise_multiplier"] == pytest.approx(row["stats_noise_multiplier"] / math.sqrt(3))
        assert row["history"] == [[row["stats_noise_multiplier"], 1.0, 1]] and row["epsilon_total"] <= 2.0
    with pytest.raises(UserError, match="--privacy.min-cohort must be at most the federation's 3 clients"):
        run_training(small_command(tmp_path, min_cohort=4))
