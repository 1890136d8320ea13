"""FedAvg / FedProx / FedLambda baselines: learning, proximal term, evaluation, ledger."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from baselines_toy import assert_state_dict_round_trip, mean, poison_test, run, toy_federation
from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.fedlambda import FedLambdaConfig
from fedsim.algorithms.fedprox import FedProxConfig
from fedsim.errors import UserError


@pytest.fixture(scope="module")
def federation():
    return toy_federation()


@pytest.mark.parametrize("algorithm,config", [("fedavg", FedAvgConfig()), ("fedprox", FedProxConfig()),
                                              ("fedlambda", FedLambdaConfig())])
def test_learns_a_separable_problem(federation, algorithm, config):
    result, rows, _, _ = run(algorithm, config, federation, rounds=5)
    assert mean(rows, "acc") > 0.95
    assert result.round_metrics[-1]["train_loss"] < result.round_metrics[0]["train_loss"]


def test_fedavg_reports_the_global_model_only(federation):
    result, rows, _, _ = run("fedavg", FedAvgConfig(), federation, rounds=2)
    assert all(e.lambdas == (0.0,) for e in result.evaluations)
    assert {r["lambda"] for r in rows} == {0.0}


def test_update_carries_only_the_shared_classifier(federation):
    _, _, pool, server = run("fedavg", FedAvgConfig(), federation, rounds=1)
    update, diagnostics = pool.clients[0].local_round(server.broadcast(), 1)
    assert set(update.delta) == {"weight", "bias"}
    assert update.num_samples == federation.clients[0].n_train
    assert "train_loss" in diagnostics.metrics


def test_proximal_term_pulls_towards_the_global_model(federation):
    """Same client state and broadcast, growing μ: the local change shrinks."""
    _, _, pool, server = run("fedprox", FedProxConfig(mu=0.0), federation, rounds=1, local_epochs=5)
    client, broadcast = pool.clients[0], server.broadcast()
    state = copy.deepcopy(client.state_dict())
    sizes = []
    for mu in (0.0, 0.5, 2.0):
        client.load_state_dict(copy.deepcopy(state))
        client.proximal_mu = mu
        update, _ = client.local_round(broadcast, 1)
        sizes.append(sum(float(v.norm()) for v in update.delta.values()))
    assert sizes[0] > sizes[1] > sizes[2] > 0
    assert sizes[2] < 0.25 * sizes[0]


def test_non_private_ledger_says_inf_whatever_the_epsilon(federation):
    result, _, _, _ = run("fedavg", FedAvgConfig(), federation, rounds=1, epsilon=1.0)
    for record in result.privacy_records:
        assert record.privacy_mode == "none"
        assert math.isinf(record.epsilon_total) and math.isinf(record.target_epsilon)
    assert math.isinf(result.round_metrics[-1]["epsilon_max"])


def test_private_option_uses_dp_sgd_and_spends_at_most_the_target(federation):
    result, _, pool, _ = run("fedavg", FedAvgConfig(private=True), federation, rounds=3, epsilon=2.0,
                             reserved_rounds=0)
    for record, client in zip(result.privacy_records, pool.clients.values()):
        assert record.privacy_mode == "strict"
        assert record.noise_multiplier > 0
        assert record.steps == client.privacy_state.plan.total_steps
        assert 1.8 < record.epsilon_total <= 2.0 + 1e-6


def test_selection_and_training_never_read_test_data(federation):
    runs = [run("fedlambda", FedLambdaConfig(), f, rounds=3) for f in (federation, poison_test(federation))]
    (clean, clean_rows, _, _), (poisoned, poisoned_rows, _, _) = runs
    assert [r["lambda"] for r in clean_rows] == [r["lambda"] for r in poisoned_rows]
    assert [r["val_acc"] for r in clean_rows] == [r["val_acc"] for r in poisoned_rows]
    for name, value in clean.artifact.model.state_dict().items():
        assert torch.equal(value, poisoned.artifact.model.state_dict()[name])
    assert mean(poisoned_rows, "acc") < mean(clean_rows, "acc")  # the poison did reach the test split
    assert mean(poisoned_rows, "global_acc") < mean(clean_rows, "global_acc")  # and the global test set


def test_same_seed_same_result(federation):
    first = run("fedprox", FedProxConfig(), federation, rounds=2)[1]
    second = run("fedprox", FedProxConfig(), federation, rounds=2)[1]
    assert first == second


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="fedprox.mu"):
        FedProxConfig(mu=-1.0).validate()
    with pytest.raises(UserError, match="--fedavg"):
        replace(FedAvgConfig(), lr=0.0).validate()


def test_state_dict_round_trip(federation):
    _, _, pool, server = run("fedavg", FedAvgConfig(private=True), federation, rounds=1, epsilon=4.0)
    client = pool.clients[1]
    assert_state_dict_round_trip(client, server.broadcast())
    assert np.isfinite(client.privacy_state.epsilon())
