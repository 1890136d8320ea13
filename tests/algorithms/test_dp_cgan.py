"""DP-CGAN baseline: generator-only updates, learning, DP on the discriminator only,
the generator as post-processing, ledger."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from baselines_toy import (assert_state_dict_round_trip, label_agreement, opacus_rdp_epsilon, run, spec_of,
                           toy_federation)
from fedsim.algorithms.dp_cgan import DPCGANClient, DPCGANConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig

SMALL = DPCGANConfig(latent_dim=8, generator_hidden=(32,), discriminator_hidden=(32,), lr=1e-2)
BATCH = 32


@pytest.fixture(scope="module")
def federation():
    return toy_federation()


@pytest.fixture(scope="module")
def private_run(federation):
    """One round at ε = 1: (result, rows, pool, server)."""
    return run("dp-cgan", SMALL, federation, rounds=1, epsilon=1.0, batch_size=BATCH)


def test_learns_class_conditional_embeddings(federation):
    result, _, _, _ = run("dp-cgan", SMALL, federation, rounds=20, local_epochs=3, batch_size=BATCH)
    assert label_agreement(result.artifact, federation) > 0.9


def test_update_carries_the_generator_only(private_run):
    _, _, pool, server = private_run
    update, diagnostics = pool.clients[0].local_round(server.broadcast(), 1)
    assert update.delta and all(name.startswith("generator.") for name in update.delta)
    assert {"d_loss", "g_loss"} <= set(diagnostics.metrics)


def test_only_the_discriminator_is_trained_by_dp_sgd(private_run):
    pool = private_run[2]
    assert all(name.startswith("discriminator.") for name in pool.clients[0].trainer.parameters)


def test_generator_step_reads_no_record(federation):
    """With the discriminator step disabled, clients that differ only in their records'
    features make identical generator steps: G sees D, DP label counts and noise only."""
    data = federation.clients[0]
    other = dataclasses.replace(data, x_train=np.random.default_rng(5).standard_normal(data.x_train.shape)
                                .astype(np.float32))
    generators = []
    for client_data in (data, other):
        client = DPCGANClient(client_data, spec_of(federation), SMALL,
                              PrivacyConfig(epsilon=1.0, reproducible_noise=True),
                              TrainingConfig(rounds=1, batch_size=BATCH), EvaluationConfig(), seed=0)
        client.trainer.step = lambda *args, **kwargs: None
        client.local_step()
        generators.append(client.model.generator.state_dict())
    for name, value in generators[0].items():
        assert torch.equal(value, generators[1][name])


def test_generator_step_equals_a_full_backward(federation):
    """The generator step differentiates G only (issue #17): after a few local steps, its
    update is bit for bit that of ``generator_loss(z, ỹ).backward()`` (which also fills
    D's gradients), and it leaves no gradient on D."""
    clients = [DPCGANClient(federation.clients[0], spec_of(federation), SMALL,
                            PrivacyConfig(epsilon=1.0, reproducible_noise=True),
                            TrainingConfig(rounds=1, batch_size=BATCH), EvaluationConfig(), seed=0)
               for _ in range(2)]
    for _ in range(3):
        for client in clients:
            client.local_step()
    fast, plain = clients
    fast.model.zero_grad(set_to_none=True)
    fast.generator_step()
    z, onehot = plain._fake_conditions()
    plain.generator_optimizer.zero_grad(set_to_none=True)
    plain.model.generator_loss(z, onehot).backward()
    plain.generator_optimizer.step()
    assert all(p.grad is None for p in fast.model.discriminator.parameters())
    for (name, value), other in zip(fast.model.state_dict().items(), plain.model.state_dict().values()):
        assert torch.equal(value, other), name
    assert torch.equal(fast.rng.get_state(), plain.rng.get_state())


def test_ledger_counts_discriminator_steps_and_label_release(private_run):
    result, _, pool, _ = private_run
    for record, client in zip(result.privacy_records, pool.clients.values()):
        assert record.privacy_mode == "strict"
        plan = client.privacy_state.plan
        assert record.steps == plan.total_steps - client.privacy_state.steps_per_round()  # 1 reserved round
        assert record.stats_noise_multiplier is not None
        assert record.epsilon_total <= 1.0 + 1e-6
        full = [(plan.noise_multiplier, plan.sample_rate, plan.total_steps), (record.stats_noise_multiplier, 1.0, 1)]
        assert 0.95 < opacus_rdp_epsilon(full, 1e-4) <= 1.0 + 1e-6  # σ was calibrated for the reserve too


def test_state_dict_round_trip(private_run):
    _, _, pool, server = private_run
    client = pool.clients[2]
    assert_state_dict_round_trip(client, server.broadcast())
