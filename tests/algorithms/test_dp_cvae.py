"""DP-CVAE baseline: decoder-only updates, learning, DP-SGD on the whole CVAE, ledger."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines_toy import label_agreement, opacus_rdp_epsilon, poison_test, run, toy_federation
from fedsim.algorithms.dp_cvae import DPCVAEConfig
from fedsim.errors import UserError
from fedsim.models.conditional import OutputScaling

SMALL = DPCVAEConfig(hidden_dim=32, hidden_layers=2, latent_dim=4, lr=1e-2)
TINY = DPCVAEConfig(hidden_dim=16, hidden_layers=1, latent_dim=2)
BATCH = 32


@pytest.fixture(scope="module")
def federation():
    return toy_federation()


@pytest.fixture(scope="module")
def private_run(federation):
    """Two rounds at ε = 1: (result, rows, pool, server)."""
    return run("dp-cvae", SMALL, federation, rounds=2, epsilon=1.0, batch_size=BATCH)


def test_learns_class_conditional_embeddings(federation):
    result, _, _, _ = run("dp-cvae", SMALL, federation, rounds=10, local_epochs=3, batch_size=BATCH)
    assert label_agreement(result.artifact, federation) > 0.95


def test_update_carries_the_decoder_only(private_run):
    _, _, pool, server = private_run
    update, diagnostics = pool.clients[0].local_round(server.broadcast(), 2)
    assert update.delta and all(name.startswith("decoder.") for name in update.delta)
    assert set(update.delta) == set(server.broadcast())
    assert {"reconstruction", "kl"} <= set(diagnostics.metrics)


def test_whole_cvae_is_trained_by_dp_sgd(private_run):
    client = private_run[2].clients[0]
    trained = set(client.trainer.parameters)
    assert trained == {name for name, _ in client.model.named_parameters()}
    assert any(name.startswith("encoder.") for name in trained)


def test_ledger_composes_dp_sgd_and_label_release(private_run):
    result, _, pool, _ = private_run
    for record, client in zip(result.privacy_records, pool.clients.values()):
        assert record.privacy_mode == "strict"
        plan = client.privacy_state.plan
        assert record.steps == 2 * plan.steps_per_epoch == plan.total_steps - plan.steps_per_epoch  # 1 reserved round
        assert record.noise_multiplier == plan.noise_multiplier > 0
        assert record.stats_noise_multiplier is not None and record.epsilon_statistics > 0
        assert record.epsilon_dp_sgd <= 0.9 + 1e-6          # the DP-SGD share of ε
        assert record.epsilon_total <= 1.0 + 1e-6           # composed, from the accountant
        # the reserved round spent too would reach the target (σ was calibrated for it)
        full = [(plan.noise_multiplier, plan.sample_rate, plan.total_steps), (record.stats_noise_multiplier, 1.0, 1)]
        assert 0.95 < opacus_rdp_epsilon(full, 1e-4) <= 1.0 + 1e-6
        assert client.privacy_state.accountant.kinds.count("release") == 1


def test_batch_covering_all_records_is_still_counted_as_dp_sgd(federation):
    config = DPCVAEConfig(hidden_dim=16, hidden_layers=1, latent_dim=2)
    result, _, _, _ = run("dp-cvae", config, federation, rounds=2, epsilon=1.0, batch_size=10_000)
    record = result.privacy_records[0]
    assert record.sample_rate == 1.0 and record.steps == 2
    assert record.epsilon_dp_sgd > 0 and record.epsilon_statistics < record.epsilon_total


def test_sigmoid_scaling_keeps_samples_in_the_public_range(federation):
    config = DPCVAEConfig(hidden_dim=16, hidden_layers=1, latent_dim=2,
                          scaling=OutputScaling("sigmoid", -1.0, 4.0))
    result, _, _, _ = run("dp-cvae", config, federation, rounds=1, batch_size=BATCH)
    samples = result.artifact.sample(np.zeros(20, dtype=np.int64), torch.Generator().manual_seed(0))
    assert samples.min() >= -1.0 and samples.max() <= 4.0


def test_selection_and_training_never_read_test_data(federation, private_run):
    clean_result, clean_rows = private_run[:2]
    poisoned_result, poisoned_rows, _, _ = run("dp-cvae", SMALL, poison_test(federation), rounds=2, epsilon=1.0,
                                                batch_size=BATCH)
    assert [r["lambda"] for r in clean_rows] == [r["lambda"] for r in poisoned_rows]
    assert [r["val_acc"] for r in clean_rows] == [r["val_acc"] for r in poisoned_rows]
    poisoned_state = poisoned_result.artifact.generator.state_dict()
    for name, value in clean_result.artifact.generator.state_dict().items():
        assert torch.equal(value, poisoned_state[name])


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="dp-cvae.scaling"):
        DPCVAEConfig(scaling=OutputScaling("sigmoid", 1.0, 1.0)).validate()
    with pytest.raises(UserError, match="--dp-cvae.latent-dim"):
        DPCVAEConfig(latent_dim=0).validate()
