"""The DP class-statistics release (Gaussian mechanism, q = 1) against per-record loops,
its sensitivity on neighbouring datasets, and its noise measured empirically."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedsim.privacy.noise import SeededNoise
from fedsim.privacy.statistics import (
    SENSITIVITY,
    class_statistics,
    clip_rows,
    moments_from_statistics,
    pooled,
    release_class_statistics,
)


def _data(n=60, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.2, 3.0, n)[:, None]  # some rows beyond R
    labels = torch.randint(0, k, (n,), generator=g)
    return x, labels


def _loop_statistics(x, labels, k, clip):
    """Independent reference in NumPy float64: clip each row, accumulate per class."""
    x, labels = x.double().numpy(), labels.numpy()
    d = x.shape[1]
    counts, sums = np.zeros(k), np.zeros((k, d))
    diag, full = np.zeros((k, d)), np.zeros((k, d, d))
    for row, y in zip(x, labels):
        norm = np.sqrt((row**2).sum())
        row = row * min(1.0, clip / norm) if norm > 0 else row
        counts[y] += 1
        sums[y] += row
        diag[y] += row * row
        full[y] += np.outer(row, row)
    return counts, sums, diag, full


def test_clip_rows_bounds_norms_and_keeps_small_rows_and_directions():
    x, _ = _data()
    clipped = clip_rows(x, 2.0)
    norms, before = clipped.norm(dim=1), x.norm(dim=1)
    assert bool((norms <= 2.0 * (1 + 1e-6)).all())
    small = before <= 2.0
    assert small.any() and (~small).any()
    torch.testing.assert_close(clipped[small], x[small])
    torch.testing.assert_close(norms[~small], torch.full_like(norms[~small], 2.0))
    cosine = torch.nn.functional.cosine_similarity(clipped, x, dim=1)
    torch.testing.assert_close(cosine, torch.ones_like(cosine))
    assert torch.equal(clip_rows(torch.zeros(2, 3), 1.0), torch.zeros(2, 3))


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_noiseless_release_equals_a_per_record_loop(covariance):
    x, labels = _data()
    stats = release_class_statistics(x, labels, 3, 2.0, 0.0, covariance, SeededNoise(torch.Generator().manual_seed(0)))
    counts, sums, diag, full = _loop_statistics(x, labels, 3, 2.0)
    np.testing.assert_allclose(stats.counts.numpy(), counts)
    np.testing.assert_allclose(stats.sums.numpy(), sums, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.second_moments.numpy(), diag if covariance == "diag" else full,
                               rtol=1e-10, atol=1e-12)
    assert stats.covariance == covariance


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_one_record_moves_the_normalised_release_by_at_most_sqrt3(covariance):
    """The sensitivity Δ = √3 the noise is calibrated to, checked on neighbours (incl. a
    record of huge norm) with the exact statistics."""
    x, labels = _data(n=20, d=4)
    x[3] *= 100.0
    x[7] = torch.tensor([0.0, -300.0, 0.0, 0.0])  # axis-aligned: ‖x∘x‖ = ‖x‖², the worst case of diag
    clip = 1.5

    def normalised(xs, ys):
        s = class_statistics(xs, ys, 3, clip, covariance)
        return torch.cat([s.counts, s.sums.reshape(-1) / clip, s.second_moments.reshape(-1) / clip**2])

    full = normalised(x, labels)
    gaps = []
    for j in range(20):
        keep = torch.tensor([i for i in range(20) if i != j])
        gaps.append(float((full - normalised(x[keep], labels[keep])).norm()))
    assert max(gaps) <= SENSITIVITY * (1 + 1e-9)
    assert gaps[7] == pytest.approx(math.sqrt(3.0), rel=1e-6)  # this clipped record attains Δ
    assert 1.0 < gaps[3] <= SENSITIVITY * (1 + 1e-9)
    assert SENSITIVITY == pytest.approx(math.sqrt(3.0))


def test_release_noise_std_is_sigma_sqrt3_times_1_R_R2():
    x, labels = _data(n=200, d=40, k=10, seed=3)
    sigma, clip, reps = 0.7, 2.0, 300
    exact = class_statistics(x, labels, 10, clip, "diag")
    source = SeededNoise(torch.Generator().manual_seed(9))
    noise = {"counts": [], "sums": [], "second": []}
    for _ in range(reps):
        s = release_class_statistics(x, labels, 10, clip, sigma, "diag", source)
        noise["counts"].append(s.counts - exact.counts)
        noise["sums"].append((s.sums - exact.sums).reshape(-1))
        noise["second"].append((s.second_moments - exact.second_moments).reshape(-1))
    base = sigma * math.sqrt(3.0)
    for name, scale, tol in (("counts", 1.0, 0.06), ("sums", clip, 0.02), ("second", clip**2, 0.02)):
        sample = torch.cat(noise[name])
        assert float(sample.mean()) == pytest.approx(0.0, abs=4 * base * scale / math.sqrt(sample.numel()))
        assert float(sample.std()) == pytest.approx(base * scale, rel=tol), name


def test_full_second_moment_noise_is_symmetric_with_the_diagonal_at_full_scale():
    x, labels = _data(n=50, d=30, k=2, seed=4)
    sigma, clip = 0.5, 1.0
    exact = class_statistics(x, labels, 2, clip, "full").second_moments
    noise = SeededNoise(torch.Generator().manual_seed(2))
    diagonal, off = [], []
    for _ in range(60):
        s = release_class_statistics(x, labels, 2, clip, sigma, "full", noise).second_moments
        torch.testing.assert_close(s, s.transpose(1, 2))
        gap = s - exact
        diagonal.append(torch.diagonal(gap, dim1=1, dim2=2).reshape(-1))
        upper = torch.triu_indices(30, 30, offset=1)
        off.append(gap[:, upper[0], upper[1]].reshape(-1))
    std = sigma * math.sqrt(3.0) * clip**2
    assert float(torch.cat(diagonal).std()) == pytest.approx(std, rel=0.07)
    # (n_ij + n_ji) / 2 is post-processing; its std is std/√2
    assert float(torch.cat(off).std()) == pytest.approx(std / math.sqrt(2.0), rel=0.03)


def test_moments_from_exact_statistics_are_the_clipped_class_moments():
    x, labels = _data(n=90, d=4, k=3, seed=5)
    clip = 2.5
    halves = [class_statistics(x[:40], labels[:40], 3, clip, "diag"),
              class_statistics(x[40:], labels[40:], 3, clip, "diag")]
    moments = moments_from_statistics(pooled(halves))
    clipped = clip_rows(x.double(), clip).numpy()
    for y in range(3):
        rows = clipped[labels.numpy() == y]
        np.testing.assert_allclose(moments.means[y].numpy(), rows.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(moments.covariances[y].numpy(), rows.var(0), rtol=1e-4, atol=1e-6)
    counts = np.bincount(labels.numpy(), minlength=3)
    np.testing.assert_allclose(moments.label_distribution.numpy(), counts / counts.sum(), rtol=1e-6)
    assert bool(moments.valid.all())
