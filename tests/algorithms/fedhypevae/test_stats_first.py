"""FedHypeVAE statistics-first (``--fedhypevae.training stats-first``): the warm start
reads only the released statistics, the small-footprint DP step's per-record clipping
against a per-record loop, the ledger ε of the mixed history against a fresh Opacus
accountant, and the synthetic spread with the observation variance of Eq. 12."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from fedsim.algorithms.dp_stats import DPStatsRelease
from fedsim.algorithms.fedhypevae import FedHypeVAEClient, FedHypeVAEConfig, FedHypeVAEServer
from fedsim.algorithms.fedhypevae.client import is_footprint
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.federation import ClientData
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.clipped_sums import RecordBatch
from fedsim.privacy.config import PrivacyConfig

DIM, CLASSES = 12, 3
CONFIG = FedHypeVAEConfig(hidden_dim=16, latent_dim=4, code_dim=4, hyper_hidden=8, label_dim=4, mmd_samples=4,
                          warm_start_steps=40, warm_start_batch=64, meta_steps=20)
SPEC = FederationSpec(num_clients=2, num_classes=CLASSES, dim=DIM)


def client_data(client_id: int, n: int = 60, spread: float = 1.0) -> ClientData:
    """Class y centred at 2·e_y with isotropic std ``spread``."""
    rng = np.random.default_rng(client_id)
    y = (np.arange(n) % CLASSES).astype(np.int64)
    x = (2.0 * np.eye(DIM)[y] + spread * rng.normal(size=(n, DIM))).astype(np.float32)
    return ClientData(client_id, x, y, x[:9], y[:9], x[9:18], y[9:18], CLASSES)


def make_client(client_id: int, config: FedHypeVAEConfig = CONFIG, epsilon: float = 2.0,
                data: ClientData | None = None) -> FedHypeVAEClient:
    privacy = PrivacyConfig(epsilon=epsilon, clip_norm=0.5, max_records=64, reproducible_noise=True)
    return FedHypeVAEClient(data or client_data(client_id), SPEC, config, privacy,
                            TrainingConfig(rounds=2, batch_size=32), EvaluationConfig(), seed=0)


def fresh_opacus_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = [(float(s), float(q), int(t)) for s, q, t in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta))


def warm_started_phi(releases) -> dict[str, torch.Tensor]:
    server = FedHypeVAEServer(SPEC, CONFIG, seed=0)
    server.warm_start(releases)
    return {name: value.clone() for name, value in server.shared.items()}


def test_the_warm_start_reads_only_the_released_statistics():
    clients = [make_client(i) for i in range(2)]
    releases = [c.release() for c in clients]
    assert all(isinstance(r, DPStatsRelease) and r.noise_multiplier > 0 for r in releases)
    before = warm_started_phi(releases)
    untouched = FedHypeVAEServer(SPEC, CONFIG, seed=0).shared
    assert any(not torch.equal(before[n], untouched[n]) for n in before)  # the warm start moved Φ
    for client in clients:  # the raw data change after the release
        client.x.mul_(-3.0).add_(1.0)
        client.data.x_train[:] = 7.0
    again = [c.release() for c in clients]
    assert all(a is r for a, r in zip(again, releases))  # one release, no new mechanism
    after = warm_started_phi(again)
    assert all(torch.equal(before[n], after[n]) for n in before)
    # control: the same clients built on other data release other statistics and another Φ
    other = [make_client(i, data=client_data(i + 5)).release() for i in range(2)]
    changed = warm_started_phi(other)
    assert any(not torch.equal(before[n], changed[n]) for n in before)


def test_the_small_footprint_step_clips_each_record_to_c_as_a_per_record_loop():
    config = dataclasses.replace(CONFIG, statistics_share=0.5)
    client = make_client(0, config)
    trainer = client.trainer
    assert trainer is not None
    assert set(trainer.parameters) == {n for n, _ in client.model.named_parameters() if is_footprint(n)}
    assert "client_code" in trainer.parameters and all(
        n == "client_code" or n.startswith("decoder.head.") for n in trainer.parameters)
    count = 9
    x, onehot = client.x[:count].clone(), client.onehot[:count].clone()
    x[-1] *= 30.0  # an outlier
    mmd_noise = torch.randn(config.mmd_samples, config.latent_dim, generator=torch.Generator().manual_seed(3))
    names = list(trainer.parameters)
    params = [trainer.parameters[n] for n in names]
    loop = []
    for j in range(count):
        loss = client.model.record_mmd(x[j], onehot[j], mmd_noise)
        loop.append(torch.autograd.grad(loss, params))
    norms = [float(torch.sqrt(sum(g.pow(2).sum() for g in grads))) for grads in loop]
    clip = sorted(norms)[count // 2]
    assert min(norms) < clip < max(norms)
    expected = [sum(g[k] * min(1.0, clip / norms[j]) for j, g in enumerate(loop)) for k in range(len(names))]
    summed = trainer.clipped_sum.clipped_sum(trainer.parameters, RecordBatch((x, onehot), (mmd_noise,)), clip)
    for k, name in enumerate(names):
        torch.testing.assert_close(summed[name], expected[k], rtol=1e-4, atol=1e-6)
    # sensitivity: removing any one record moves the clipped sum by at most C
    for j in range(count):
        keep = [i for i in range(count) if i != j]
        without = trainer.clipped_sum.clipped_sum(trainer.parameters,
                                                  RecordBatch((x[keep], onehot[keep]), (mmd_noise,)), clip)
        change = torch.sqrt(sum((summed[n] - without[n]).pow(2).sum() for n in names))
        assert float(change) <= clip * (1 + 1e-5)


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_ledger_epsilon_of_the_mixed_history_is_opacus_epsilon(share):
    config = dataclasses.replace(CONFIG, statistics_share=share)
    server = FedHypeVAEServer(SPEC, config, seed=0)
    client = make_client(0, config, epsilon=2.0)
    release = client.release()
    server.warm_start([release])
    for round_index in range(2):
        update, _ = client.local_round(server.broadcast(), round_index)
        server.aggregate([update])
    record = client.privacy_record()
    plan = client.privacy_state.plan
    history = [(release.noise_multiplier, 1.0, 1)]
    if share < 1.0:
        assert set(update.delta) == set(server.shared)
        history.append((plan.noise_multiplier, plan.sample_rate, 2 * client.privacy_state.steps_per_round()))
        planned = [history[0], (plan.noise_multiplier, plan.sample_rate, plan.total_steps)]
        assert fresh_opacus_epsilon(planned, 1e-4) <= 2.0 * (1 + 1e-6)  # the calibration's promise
    else:
        assert update.delta == {} and record.steps == 0
    assert [tuple(h) for h in record.history] == history
    assert record.epsilon_total == pytest.approx(fresh_opacus_epsilon(history, 1e-4), rel=1e-9)
    assert record.epsilon_total <= 2.0 * (1 + 1e-6)
    assert record.epsilon_statistics == pytest.approx(fresh_opacus_epsilon(history[:1], 1e-4), rel=1e-9)


def test_synthetic_spread_with_observation_variance_matches_the_data_at_infinite_epsilon():
    config = dataclasses.replace(CONFIG, warm_start_steps=150)
    data = [client_data(i, n=300, spread=0.7) for i in range(2)]
    clients = [make_client(i, config, epsilon=float("inf"), data=d) for i, d in enumerate(data)]
    server = FedHypeVAEServer(SPEC, config, seed=0)
    releases = [c.release() for c in clients]
    assert all(r.noise_multiplier == 0.0 for r in releases)
    server.warm_start(releases)
    artifact = server.finalize(releases)
    assert artifact.observation_std is not None
    labels = np.repeat(np.arange(CLASSES), 400)
    synthetic = artifact.sample(labels, torch.Generator().manual_seed(0))
    x = np.concatenate([d.x_train for d in data])
    y = np.concatenate([d.y_train for d in data])
    real_spread = np.mean([x[y == c].std(axis=0).mean() for c in range(CLASSES)])
    synthetic_spread = np.mean([synthetic[labels == c].std(axis=0).mean() for c in range(CLASSES)])
    assert synthetic_spread >= 0.8 * real_spread
    assert synthetic_spread <= 1.25 * real_spread
    plain = dataclasses.replace(artifact, observation_std=None).sample(labels, torch.Generator().manual_seed(0))
    assert np.mean([plain[labels == c].std(axis=0).mean() for c in range(CLASSES)]) < synthetic_spread


@pytest.mark.parametrize("training", ["stats-first", "dp-sgd"])
def test_the_ablation_without_hypernetwork_finalizes_with_the_zero_code(training):
    """The generator ignores the codes without the hypernetwork: Eq. 11 has nothing to fit
    (it used to fail in backward), synthesis uses v = 0 and still follows the statistics."""
    config = dataclasses.replace(CONFIG, hypernetwork=False, training=training)
    clients = [make_client(i, config, epsilon=float("inf")) for i in range(2)]
    server = FedHypeVAEServer(SPEC, config, seed=0)
    releases = [c.release() for c in clients]
    server.warm_start(releases)
    artifact = server.finalize(releases)
    assert torch.equal(artifact.codes, torch.zeros(1, config.code_dim))
    labels = np.repeat(np.arange(CLASSES), 50)
    synthetic = artifact.sample(labels, torch.Generator().manual_seed(0))
    assert synthetic.shape == (len(labels), DIM) and np.isfinite(synthetic).all()
