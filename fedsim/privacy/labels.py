"""DP release of a client's class counts (the Gaussian mechanism).

Adding or removing one record changes exactly one count by 1, so the count vector
``N ∈ R^K`` has L2 sensitivity 1 and ``N + N(0, σ² I)`` is a Gaussian mechanism with
noise multiplier σ (Dwork & Roth 2014, Thm. A.1; accounted by RDP/PRV like any
Gaussian mechanism with sample rate 1).  The label distribution derived from it
(clamped at 0, normalised) is post-processing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fedsim.privacy.noise import NoiseSource


def release_label_counts(labels: np.ndarray | Tensor, num_classes: int, noise_multiplier: float,
                         noise: NoiseSource) -> Tensor:
    """Class counts plus ``N(0, σ²)`` noise from ``noise`` on every class (float64, may be
    negative; nothing is drawn when σ = 0)."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    counts = torch.bincount(labels, minlength=num_classes).double()
    if noise_multiplier == 0.0:
        return counts
    return counts + noise.gaussian((num_classes,), noise_multiplier, dtype=torch.float64, device=counts.device)


def label_distribution(counts: Tensor) -> Tensor:
    """Counts clamped at 0 and normalised (uniform when nothing is left), float32."""
    clamped = counts.double().clamp_min(0.0)
    total = clamped.sum()
    if total <= 0:
        return torch.full((len(counts),), 1.0 / len(counts))
    return (clamped / total).float()
