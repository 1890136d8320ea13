"""dp-stats: the release's sensitivity against a per-record recomputation, its noise
against an empirical standard deviation, its ε against Opacus' accountants called
directly, exactness at ε = ∞, the small-class rule and an end-to-end CLI run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from baselines_toy import spec_of, toy_federation
from fedsim.algorithms.dp_stats import DPStatsConfig, DPStatsRelease, class_generator
from fedsim.algorithms.registry import RunSettings, algorithm_module
from fedsim.algorithms.spec import TrainingConfig
from fedsim.errors import UserError
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.statistics import SENSITIVITY, ClassStatistics, release_class_statistics


@pytest.fixture(scope="module")
def federation():
    return toy_federation()


def clients_and_server(federation, config: DPStatsConfig, epsilon: float, seed: int = 0, accountant="rdp"):
    settings = RunSettings("dp-stats", config, PrivacyConfig(epsilon=epsilon, accountant=accountant),
                           TrainingConfig(rounds=1), EvaluationConfig(), seed)
    module = algorithm_module("dp-stats")
    spec = spec_of(federation)
    return [module.make_client(c, spec, settings) for c in federation.clients], module.make_server(spec, settings)


def normalised_release(x: np.ndarray, y: np.ndarray, num_classes: int, radius: float, full: bool) -> np.ndarray:
    """``[N, S/R, M/R²]`` recomputed record by record (independent of fedsim's code)."""
    dim = x.shape[1]
    counts, sums = np.zeros(num_classes), np.zeros((num_classes, dim))
    second = np.zeros((num_classes, dim, dim)) if full else np.zeros((num_classes, dim))
    for record, label in zip(x.astype(np.float64), y):
        norm = math.sqrt(float(record @ record))
        clipped = record * min(1.0, radius / norm) if norm > 0 else record
        counts[label] += 1
        sums[label] += clipped / radius
        second[label] += (np.outer(clipped, clipped) if full else clipped * clipped) / radius**2
    return np.concatenate([counts, sums.ravel(), second.ravel()])


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_sensitivity_by_per_record_recomputation(federation, covariance):
    client = federation.clients[0]
    x, y, k = client.x_train[:60], client.y_train[:60], federation.num_classes
    radius = 2.0  # below most records' norms (≈ 3.1): clipping is active
    assert (np.linalg.norm(x, axis=1) > radius).mean() > 0.5
    full = covariance == "full"
    whole = normalised_release(x, y, k, radius, full)
    changes = [np.linalg.norm(whole - normalised_release(np.delete(x, i, 0), np.delete(y, i), k, radius, full))
               for i in range(len(x))]
    # the accountant charges σ_s for noise of std σ_s·√3 on normalised coordinates: Δ must be ≤ √3
    assert max(changes) <= SENSITIVITY * (1 + 1e-9)
    if full:  # ‖x xᵀ‖_F = ‖x‖² = R² for a clipped record: the bound is tight
        assert max(changes) == pytest.approx(SENSITIVITY, rel=1e-6)
    # the mechanism's noiseless statistics are this recomputation (scaled back)
    exact = release_class_statistics(torch.as_tensor(x), torch.as_tensor(y), k, radius, 0.0, covariance,
                                     torch.Generator())
    mechanism = np.concatenate([exact.counts.numpy(), exact.sums.numpy().ravel() / radius,
                                exact.second_moments.numpy().ravel() / radius**2])
    np.testing.assert_allclose(mechanism, whole, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_release_noise_std_is_the_calibrated_std(federation, covariance):
    """Noise of many releases (one per seed, same data) around the per-record recomputation
    has std σ_s·√3 on every normalised block, σ_s the accountant's charged multiplier."""
    config = DPStatsConfig(clip_norm=2.0, covariance=covariance)
    k = federation.num_classes
    data = federation.clients[0]
    exact = normalised_release(data.x_train, data.y_train, k, 2.0, covariance == "full")
    dim = data.x_train.shape[1]
    blocks = {"counts": slice(0, k), "sums": slice(k, k + k * dim), "second": slice(k + k * dim, None)}
    residuals: dict[str, list[np.ndarray]] = {name: [] for name in blocks}
    charged = set()
    for seed in range(40):
        clients, _ = clients_and_server(federation, config, epsilon=2.0, seed=seed)
        client = clients[0]
        release = client.release()
        charged.add(client.privacy_state.accountant.history[0][0])
        stats = release.statistics
        vector = np.concatenate([stats.counts.numpy(), stats.sums.numpy().ravel() / 2.0,
                                 stats.second_moments.numpy().ravel() / 4.0])
        for name, rows in blocks.items():
            residual = vector[rows] - exact[rows]
            if name == "second" and covariance == "full":  # symmetrised: diagonal entries keep the full std
                residual = residual.reshape(k, dim, dim)[:, np.arange(dim), np.arange(dim)].ravel()
            residuals[name].append(residual)
    (sigma,) = charged
    assert sigma == release.noise_multiplier
    for name, values in residuals.items():
        values = np.concatenate(values)
        assert abs(values.mean()) < 4 * sigma * SENSITIVITY / math.sqrt(len(values))
        assert np.std(values) == pytest.approx(sigma * SENSITIVITY, rel=5 / math.sqrt(len(values))), name


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_ledger_epsilon_is_opacus_and_spends_the_budget(federation, accountant, epsilon):
    clients, _ = clients_and_server(federation, DPStatsConfig(), epsilon=epsilon, accountant=accountant)
    client = clients[0]
    update, _ = client.local_round({}, 0)
    assert dict(update.delta) == {} and client.privacy_state.accountant.history == []  # rounds spend nothing
    client.release()
    client.release()  # asked again: the same release, no new mechanism
    record = client.privacy_record()
    (sigma, rate, steps), = record.history
    assert (rate, steps) == (1.0, 1) and record.steps == 0 and record.stats_noise_multiplier == sigma

    def opacus_epsilon(noise: float) -> float:
        fresh = RDPAccountant() if accountant == "rdp" else PRVAccountant()
        fresh.history = [(noise, 1.0, 1)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fresh.get_epsilon(record.delta)

    assert record.epsilon_total == pytest.approx(opacus_epsilon(sigma), rel=1e-9)
    assert record.epsilon_statistics == record.epsilon_total <= epsilon
    assert opacus_epsilon(sigma * 0.99) > epsilon  # the full budget: 1 % less noise would exceed it


def data_moments(federation, y: int):
    x = np.concatenate([c.x_train for c in federation.clients]).astype(np.float64)
    labels = np.concatenate([c.y_train for c in federation.clients])
    rows = x[labels == y]
    return rows.mean(0), np.cov(rows.T, bias=True)


@pytest.mark.parametrize("covariance", ["diag", "full", "lowrank", "auto"])
def test_generator_is_exact_at_infinite_epsilon(federation, covariance):
    config = DPStatsConfig(covariance=covariance, rank=2)
    clients, server = clients_and_server(federation, config, epsilon=math.inf)
    artifact = server.finalize([c.release() for c in clients])
    assert all(c.privacy_state.accountant.history == [] for c in clients)
    per_class = 20000
    labels = np.repeat(np.arange(federation.num_classes), per_class)
    samples = artifact.sample(labels, torch.Generator().manual_seed(0)).astype(np.float64)
    modelled = artifact.covariances().double().numpy()
    for y in range(federation.num_classes):
        mean, cov = data_moments(federation, y)
        np.testing.assert_allclose(artifact.means[y].numpy(), mean, atol=1e-5)
        np.testing.assert_allclose(np.diag(modelled[y]), np.diag(cov), rtol=1e-4)  # every form keeps variances
        if covariance in ("full", "auto"):  # auto: the full matrix at ε = ∞
            np.testing.assert_allclose(modelled[y], cov, atol=1e-5)
        drawn = samples[labels == y]
        std_error = np.sqrt(np.diag(cov) / per_class)
        assert np.all(np.abs(drawn.mean(0) - mean) < 5 * std_error)
        np.testing.assert_allclose(drawn.var(0), np.diag(cov), rtol=0.05)
    counts = np.bincount(np.concatenate([c.y_train for c in federation.clients]), minlength=federation.num_classes)
    np.testing.assert_allclose(artifact.label_distribution.numpy(), counts / counts.sum(), rtol=1e-6)


def test_lowrank_keeps_the_top_eigenpairs(federation):
    clients, server = clients_and_server(federation, DPStatsConfig(covariance="lowrank", rank=2), math.inf)
    artifact = server.finalize([c.release() for c in clients])
    _, cov = data_moments(federation, 0)
    values, vectors = np.linalg.eigh(cov)
    top = (vectors[:, -2:] * values[-2:]) @ vectors[:, -2:].T
    factor = artifact.factors[0].double().numpy()
    np.testing.assert_allclose(factor @ factor.T, top, atol=1e-5)


def test_noisy_small_classes_fall_back_to_the_pooled_moments():
    """A class below max(2, min_count_stds × the pooled count-noise std) gets the pooled
    mean and covariance and no labels; the threshold uses only public σ_s."""
    dim = 3
    counts = torch.tensor([200.0, 20.0, 100.0], dtype=torch.float64)
    means = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], dtype=torch.float64)
    stats = ClassStatistics(counts, counts[:, None] * means, counts[:, None] * (means.pow(2) + 0.5))
    sigma = 2.0  # two clients: pooled count noise std √3·σ·√2 ≈ 4.9; class 1's pooled count is 40
    releases = [DPStatsRelease(stats, sigma, 1.0), DPStatsRelease(stats, sigma, 1.0)]
    artifact = class_generator(releases, DPStatsConfig(min_count_stds=3.0))  # threshold ≈ 14.7
    assert artifact.valid.tolist() == [True, True, True]
    artifact = class_generator(releases, DPStatsConfig(min_count_stds=10.0))  # threshold ≈ 49
    assert artifact.valid.tolist() == [True, False, True]
    pooled_mean = (counts[:, None] * means).sum(0) / counts.sum()
    np.testing.assert_allclose(artifact.means[1].numpy(), pooled_mean.numpy(), rtol=1e-6)
    assert float(artifact.label_distribution[1]) == 0.0
    np.testing.assert_allclose(artifact.label_distribution.numpy(), [2 / 3, 0, 1 / 3], rtol=1e-6)
    assert artifact.means.shape == (3, dim)


def test_state_dict_round_trip_keeps_the_release(federation):
    clients, _ = clients_and_server(federation, DPStatsConfig(), epsilon=1.0)
    client = clients[0]
    first = client.release()
    state = client.state_dict()
    fresh, _ = clients_and_server(federation, DPStatsConfig(), epsilon=1.0)
    fresh[0].load_state_dict(state)
    again = fresh[0].release()  # restored: no second mechanism, the same numbers
    assert torch.equal(again.statistics.sums, first.statistics.sums)
    assert fresh[0].privacy_state.accountant.history == client.privacy_state.accountant.history


@pytest.mark.parametrize("field,value", [("rank", 0), ("shrinkage", 1.5), ("variance_floor", -1.0),
                                         ("clip_norm", 0.0), ("min_count_stds", -1.0)])
def test_invalid_options_name_the_option(field, value):
    with pytest.raises(UserError, match=f"--dp-stats.{field.replace('_', '-')}"):
        DPStatsConfig(**{field: value}).validate()


def test_train_cli_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--algorithm", "dp-stats", "--backend", "local", "--training.rounds", "1",
            "--data.synthetic.n-samples", "600", "--data.synthetic.dim", "16", "--data.num-clients", "3",
            "--threads", "1", "--no-progress", "--checkpoint-every", "0", "--privacy.epsilon", "2.0",
            "--dp-stats.covariance", "lowrank", "--dp-stats.rank", "4", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "fedsim.run", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    ledger = json.loads((out / "privacy.json").read_text())
    for row in ledger["clients"]:
        assert len(row["history"]) == 1 and row["history"][0][1:] == [1.0, 1]
        fresh = RDPAccountant()
        fresh.history = [tuple(row["history"][0])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert row["epsilon_total"] == pytest.approx(fresh.get_epsilon(row["delta"]), rel=1e-9)
        assert row["epsilon_total"] <= 2.0 and row["stats_clip_norm"] == pytest.approx(4.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == "dp-stats" and 0.0 <= summary["bacc_mean"] <= 1.0
    assert (out / "synthetic.parquet").exists()


@pytest.mark.parametrize("epsilon, released", [(math.inf, "full"), (1.0, "diag")])
def test_auto_covariance_releases_the_full_matrix_only_without_dp(federation, epsilon, released):
    clients, _ = clients_and_server(federation, DPStatsConfig(), epsilon=epsilon)
    assert DPStatsConfig().covariance == "auto"
    assert clients[0].release().statistics.covariance == released
    assert DPStatsConfig(covariance="diag").form(private=False) == "diag"
    assert DPStatsConfig(covariance="lowrank").released_covariance(private=True) == "full"
    privacy = PrivacyConfig(epsilon=epsilon)
    assert privacy.covariance == "auto" and privacy.released_covariance == released
    assert PrivacyConfig(epsilon=epsilon, covariance="diag").released_covariance == "diag"
    assert PrivacyConfig(epsilon=epsilon, covariance="full").released_covariance == "full"
