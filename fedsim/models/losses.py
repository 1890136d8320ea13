"""Closed-form and kernel losses shared by the generative models.

* :func:`gaussian_kl` — KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) for diagonal Gaussians, the KL
  term of the ELBO (paper Eq. 1) against the hyper-generated prior (Eq. 4).
* :func:`multi_kernel` — the Gaussian multi-kernel k of Eq. 6,
  ``k(a, b) = (1/S) Σ_s exp(-‖a − b‖² / (2 h_s² d))``.  Bandwidths are fixed multiples
  of √d (d = embedding dimension), so they never depend on data: a median-heuristic
  bandwidth computed on a batch would couple the records of that batch.
* :func:`mmd2` — the (biased, V-statistic) MMD² of Eq. 6 between two sample sets.
* :func:`mmd_cross_term` / :func:`mmd_synthetic_term` — the decomposable form used
  under DP: MMD² = E k(x,x') − 2 E k(x, x̂) + E k(x̂, x̂').  The first term has no
  parameters, the second is a sum of per-record terms (each depends on one real
  record only), the third touches no real record.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

DEFAULT_BANDWIDTHS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, log_sigma_p: Tensor) -> Tensor:
    """Σ over the last axis of KL(N(μ_q, e^{logvar_q}) ‖ N(μ_p, e^{2 log σ_p}))."""
    var_q = logvar_q.exp()
    var_p = (2.0 * log_sigma_p).exp()
    kl = log_sigma_p - 0.5 * logvar_q + (var_q + (mu_q - mu_p).pow(2)) / (2.0 * var_p) - 0.5
    return kl.sum(dim=-1)


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise ‖a_i − b_j‖² for ``a`` (..., n, d) and ``b`` (..., m, d)."""
    return (a.pow(2).sum(-1)[..., :, None] + b.pow(2).sum(-1)[..., None, :]
            - 2.0 * a @ b.transpose(-1, -2)).clamp_min(0.0)


def multi_kernel(a: Tensor, b: Tensor, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS) -> Tensor:
    """Gaussian multi-kernel matrix ``k(a_i, b_j)`` (module docstring)."""
    dim = a.shape[-1]
    distances = squared_distances(a, b)
    kernels = [torch.exp(-distances / (2.0 * h * h * dim)) for h in bandwidths]
    return torch.stack(kernels, dim=0).mean(dim=0)


def mmd2(x: Tensor, y: Tensor, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS) -> Tensor:
    """Biased MMD² estimate (Eq. 6) between samples ``x`` (n, d) and ``y`` (m, d)."""
    return (multi_kernel(x, x, bandwidths).mean() + multi_kernel(y, y, bandwidths).mean()
            - 2.0 * multi_kernel(x, y, bandwidths).mean())


def mmd_cross_term(x: Tensor, synthetic: Tensor, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS) -> Tensor:
    """Per-record part of MMD²: ``-2 · mean_m k(x, x̂_m)`` for one real record ``x`` (d,)."""
    return -2.0 * multi_kernel(x[None, :], synthetic, bandwidths).mean()


def mmd_synthetic_term(synthetic: Tensor, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS) -> Tensor:
    """Record-free part of MMD²: ``mean_{m,m'} k(x̂_m, x̂_m')``."""
    return multi_kernel(synthetic, synthetic, bandwidths).mean()
