"""The neighbouring relation: add/remove one record with the public bound
``--privacy.max-records``.  Two neighbouring datasets (one record removed) give the same
DP-SGD plan, the same public parts of every ClientUpdate and the same released sizes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from client_kit import PRIVACY, client_data, make_client, without_record
from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.registry import RunSettings, algorithm_module
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import synthetic_set_size
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.ledger import ledger_to_json
from fedsim.privacy.plan import kept_records, plan_dp_sgd, record_rank

def test_plans_of_neighbouring_datasets_are_equal_and_read_only_the_bound():
    privacy = PrivacyConfig(epsilon=2.0, max_records=300)
    plans = [plan_dp_sgd(n, 32, 3, 2, privacy, 0.9) for n in (120, 119, 300)]
    assert plans[0] == plans[1] == plans[2]
    assert plans[0].sample_rate == pytest.approx(32 / 300) and plans[0].expected_batch_size == pytest.approx(32)
    assert plans[0].total_steps == (3 + privacy.reserved_rounds) * 2 * math.ceil(300 / 32)


@pytest.mark.parametrize("algorithm", ["fedhypevae", "dp-cvae", "fedavg"])
def test_neighbouring_datasets_send_the_same_public_parts(algorithm):
    data = client_data(40)
    client, server = make_client(algorithm, data)
    neighbour, _ = make_client(algorithm, without_record(data, 5))
    assert client.privacy_state.plan == neighbour.privacy_state.plan
    assert client.privacy_state.plan.num_records == PRIVACY.max_records
    broadcast = server.broadcast()
    update, _ = client.local_round(broadcast, 0)
    other, _ = neighbour.local_round(broadcast, 0)
    if algorithm == "dp-cvae":
        # the sum of the released noisy class counts (DP), not n_i: both equal the same
        # post-processing of each client's own released counts
        for c, u in ((client, update), (neighbour, other)):
            assert c.label_noise_multiplier > 0
            assert u.num_samples == pytest.approx(min(64.0, max(1.0, float(c.release().sum()))))
            assert u.num_samples != len(c.u)
    else:
        assert update.num_samples == other.num_samples == PRIVACY.max_records  # the public bound


def test_without_dp_the_exact_count_is_sent():
    data = client_data(40)
    settings = RunSettings("fedavg", FedAvgConfig(), PrivacyConfig(), TrainingConfig(rounds=1, batch_size=16),
                           EvaluationConfig(), seed=3)
    spec = FederationSpec(1, 3, 8)
    client = algorithm_module("fedavg").make_client(data, spec, settings)
    update, _ = client.local_round(algorithm_module("fedavg").make_server(spec, settings).broadcast(), 0)
    assert update.num_samples == 40


def test_released_synthetic_size_is_the_dp_count_not_the_total():
    command = TrainCommand(privacy=PRIVACY)
    federations = [SimpleNamespace(clients=[client_data(40), client_data(30)]),
                   SimpleNamespace(clients=[client_data(40), without_record(client_data(30), 0)])]
    artifact = SimpleNamespace(released_records=71.6)
    assert [synthetic_set_size(command, f, artifact) for f in federations] == [72, 72]
    no_dp = TrainCommand(privacy=PrivacyConfig(epsilon=math.inf))
    assert [synthetic_set_size(no_dp, f, artifact) for f in federations] == [70, 69]


def test_generative_artifact_counts_released_records():
    data = client_data(40)
    client, server = make_client("dp-cvae", data)
    artifact = server.finalize([client.release()])
    assert artifact.released_records == pytest.approx(float(client.release().clamp_min(0).sum()))


def test_truncation_to_the_bound_swaps_at_most_one_record():
    data = client_data(100, seed=1)
    privacy = PrivacyConfig(max_records=60)
    kept = kept_records(data.x_train, data.y_train, privacy, 7, 0)
    assert len(kept) == 60
    ranks = record_rank(data.x_train, data.y_train, 7, 0)
    assert np.array_equal(np.sort(kept), np.sort(np.argsort(ranks, kind="stable")[:60]))
    for j in (int(kept[0]), int(np.setdiff1d(np.arange(100), kept)[0])):
        neighbour = without_record(data, j)
        original = np.delete(np.arange(100), j)  # neighbour's index -> original index
        kept_after = set(original[kept_records(neighbour.x_train, neighbour.y_train, privacy, 7, 0)].tolist())
        before = set(kept.tolist()) - {j}
        if j in kept:
            assert before <= kept_after and len(kept_after - before) == 1  # one replacement
        else:
            assert kept_after == set(kept.tolist())  # a record that was not kept changes nothing
    assert len(kept_records(data.x_train, data.y_train, PrivacyConfig(epsilon=math.inf, max_records=60), 7, 0)) == 100


def test_ledger_records_the_neighbouring_relation():
    data = client_data(40)
    client, _ = make_client("fedhypevae", data)
    ledger = ledger_to_json([client.privacy_record()])
    assert "add/remove" in ledger["neighbouring"] and "max_records=64" in ledger["neighbouring"]
    assert ledger["clients"][0]["max_records"] == 64


def test_max_records_is_validated():
    from fedsim.errors import UserError

    with pytest.raises(UserError, match="max-records"):
        PrivacyConfig(max_records=0).validate()
    with pytest.raises(UserError, match="reserved-rounds"):
        PrivacyConfig(reserved_rounds=-1).validate()


def test_dp_sgd_batches_are_drawn_over_the_clients_own_records():
    client, _ = make_client("fedavg", client_data(40))
    batches = [client.trainer.sample_batch() for _ in range(200)]
    assert max(int(b.max()) for b in batches if len(b)) < 40
    mean = np.mean([len(b) for b in batches])
    assert mean == pytest.approx(40 * 16 / 64, rel=0.2)  # q = B / max_records over n = 40 records
