"""DP release of per-class embedding statistics (the Gaussian mechanism), used to fit
the meta-code of Eq. 11.

Each record ``(x, y)`` is first norm-clipped to ``R`` (``x ← x · min(1, R/‖x‖)``).  The
client then releases, per class y, the count ``N_y``, the sum ``S_y = Σ x`` and the
second moment ``M_y = Σ x xᵀ`` (or its diagonal ``Σ x∘x``).  Adding or removing one
record changes the *normalised* release ``[N, S/R, M/R²]`` by a one-hot (norm 1), a
vector of norm ≤ 1 and a matrix of Frobenius norm ``‖x‖²/R² ≤ 1`` (the diagonal has
norm ``‖x∘x‖₂ ≤ ‖x‖₂²/R² ≤ 1`` too), so its L2 sensitivity is ``Δ = √3``.  Adding
``N(0, (σ_s Δ)²)`` to every normalised coordinate is a Gaussian mechanism with noise
multiplier ``σ_s`` (noise std / sensitivity), accounted as one step with sample rate 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor

from fedsim.privacy.noise import NoiseSource

SENSITIVITY = math.sqrt(3.0)


@dataclass(frozen=True)
class ClassStatistics:
    """(Noisy) per-class counts ``(K,)``, sums ``(K, d)`` and second moments
    ``(K, d)`` (diagonal) or ``(K, d, d)`` (full)."""

    counts: Tensor
    sums: Tensor
    second_moments: Tensor

    @property
    def covariance(self) -> Literal["diag", "full"]:
        return "full" if self.second_moments.dim() == 3 else "diag"

    def __add__(self, other: "ClassStatistics") -> "ClassStatistics":
        return ClassStatistics(self.counts + other.counts, self.sums + other.sums,
                               self.second_moments + other.second_moments)


def clip_rows(x: Tensor, max_norm: float) -> Tensor:
    """Scale each row of ``x`` to L2 norm at most ``max_norm``."""
    norms = x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    clipped: Tensor = x * (max_norm / norms).clamp(max=1.0)
    return clipped


def class_statistics(x: Tensor, labels: Tensor, num_classes: int, clip_norm: float,
                     covariance: Literal["diag", "full"]) -> ClassStatistics:
    """Exact (non-private) statistics of the norm-clipped records."""
    clipped = clip_rows(x.double(), clip_norm)
    onehot = torch.nn.functional.one_hot(labels, num_classes).double()
    counts = onehot.sum(dim=0)
    sums = onehot.T @ clipped
    if covariance == "diag":
        second = onehot.T @ clipped.pow(2)
    else:
        second = torch.einsum("nk,ni,nj->kij", onehot, clipped, clipped)
    return ClassStatistics(counts, sums, second)


def release_class_statistics(
    x: Tensor,
    labels: Tensor,
    num_classes: int,
    clip_norm: float,
    noise_multiplier: float,
    covariance: Literal["diag", "full"],
    noise: NoiseSource,
) -> ClassStatistics:
    """The Gaussian mechanism of the module docstring: noise std ``σ_s·√3`` on counts,
    ``σ_s·√3·R`` on sums and ``σ_s·√3·R²`` on second moments, drawn from ``noise``
    (second moments first, then counts, then sums; nothing when σ_s = 0)."""
    exact = class_statistics(x, labels, num_classes, clip_norm, covariance)
    std = noise_multiplier * SENSITIVITY

    def noisy(t: Tensor, scale: float) -> Tensor:
        if std == 0.0:
            return t
        return t + noise.gaussian(t.shape, std * scale, dtype=t.dtype, device=t.device)

    second = noisy(exact.second_moments, clip_norm**2)
    if covariance == "full":
        second = 0.5 * (second + second.transpose(1, 2))  # post-processing
    return ClassStatistics(noisy(exact.counts, 1.0), noisy(exact.sums, clip_norm), second)


def pooled(statistics: Sequence[ClassStatistics]) -> ClassStatistics:
    """Sum of the clients' released statistics (server side, post-processing)."""
    total = statistics[0]
    for item in statistics[1:]:
        total = total + item
    return total


@dataclass(frozen=True)
class ClassMoments:
    """Per-class mean ``(K, d)`` and covariance (``(K, d)`` diagonal or ``(K, d, d)``),
    the label distribution ``(K,)`` and which classes have enough (noisy) mass."""

    means: Tensor
    covariances: Tensor
    label_distribution: Tensor
    valid: Tensor


def moments_from_statistics(stats: ClassStatistics, min_count: float = 2.0) -> ClassMoments:
    """μ̂_y = S_y / N_y and Σ̂_y = M_y / N_y − μ̂_y μ̂_yᵀ from (noisy) statistics.

    Classes whose noisy count is below ``min_count`` are marked invalid (their moments
    are noise); the label distribution is the clamped, normalised noisy counts."""
    counts = stats.counts.clamp_min(0.0)
    valid = counts >= min_count
    safe = counts.clamp_min(1.0)
    means = stats.sums / safe[:, None]
    if stats.covariance == "diag":
        covariances = (stats.second_moments / safe[:, None] - means.pow(2)).clamp_min(0.0)
    else:
        covariances = stats.second_moments / safe[:, None, None] - torch.einsum("ki,kj->kij", means, means)
    total = counts.sum()
    distribution = counts / total if total > 0 else torch.full_like(counts, 1.0 / len(counts))
    return ClassMoments(means.float(), covariances.float(), distribution.float(), valid)
