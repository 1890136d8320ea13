"""Fidelity of synthetic embeddings against held-out real ones.

The real reference set is the union of the clients' *validation* splits: no method
trains on them (they only choose λ), and the test splits stay untouched.  Both sets
are subsampled to at most ``max_samples`` records (seeded).

* **MMD²** (Gretton et al. 2012): the biased multi-kernel estimate of
  :func:`fedsim.models.losses.mmd2` (Gaussian kernels, bandwidths {0.5, 1, 2, 4}·√d);
  0 for identical distributions, larger is worse.
* **Precision / recall** (Kynkäänniemi et al. 2019): the real manifold is the union
  of balls ``B(x_i, r_k(x_i))``, r_k the distance to the k-th nearest other real
  record; precision is the share of synthetic records inside it.  Recall swaps the
  roles (share of real records inside the synthetic manifold).
* **Density / coverage** (Naeem et al. 2020), on the real k-NN balls:
  ``density = (1/(kM)) Σ_j Σ_i 1[y_j ∈ B(x_i, r_k(x_i))]`` (≈ 1 when synthetic
  records are distributed like real ones; robust to outliers in the synthetic set),
  ``coverage = (1/N) Σ_i 1[∃ j: y_j ∈ B(x_i, r_k(x_i))]``.

In high dimension with noisy real records, the real k-NN balls are wide, and a
generator that outputs class means (no diversity) lands inside nearly all of them:
precision, density and coverage then saturate while recall drops to 0 — read the
k-NN metrics together with MMD² and recall.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fedsim.models.losses import mmd2
from fedsim.seeding import numpy_rng

METRICS = ("mmd2", "precision", "recall", "density", "coverage")


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every row to its k-th nearest *other* row."""
    distances = torch.cdist(x, x)
    return distances.topk(min(k + 1, len(x)), largest=False).values[:, -1]


def _subsample(x: np.ndarray, size: int, seed: int, tag: str) -> torch.Tensor:
    if len(x) > size:
        x = x[np.sort(numpy_rng(seed, "fidelity", tag).choice(len(x), size, replace=False))]
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def fidelity(real: np.ndarray, synthetic: np.ndarray | None, k: int = 5, max_samples: int = 2000,
             seed: int = 0) -> dict[str, float]:
    """MMD², precision, recall, density and coverage (module docstring); NaN for every
    metric when there is no synthetic set (or fewer than k + 1 records on a side)."""
    if synthetic is None or len(synthetic) <= k or len(real) <= k:
        return {name: math.nan for name in METRICS}
    x = _subsample(real, max_samples, seed, "real")
    y = _subsample(synthetic, max_samples, seed, "synthetic")
    real_radii, synthetic_radii = knn_radii(x, k), knn_radii(y, k)
    cross = torch.cdist(y, x)                                  # (M, N)
    inside_real = cross <= real_radii[None, :]                 # y_j in B(x_i, r_i)
    inside_synthetic = cross.T <= synthetic_radii[None, :]     # x_i in B(y_j, r_j)
    return {
        "mmd2": float(mmd2(x.float(), y.float())),
        "precision": float(inside_real.any(dim=1).double().mean()),
        "recall": float(inside_synthetic.any(dim=1).double().mean()),
        "density": float(inside_real.double().sum() / (k * len(y))),
        "coverage": float(inside_real.any(dim=0).double().mean()),
    }


def held_out_real(federation) -> np.ndarray:
    """The clients' validation splits, pooled (the fidelity reference set)."""
    return np.concatenate([client.x_val for client in federation.clients])
