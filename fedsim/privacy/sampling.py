"""Poisson subsampling: each record joins each step's batch independently with
probability q.  The RDP/PRV analyses of the subsampled Gaussian mechanism assume
exactly this; batch sizes therefore vary (and may be 0)."""

from __future__ import annotations

import torch


def poisson_sample(num_records: int, sample_rate: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of the records drawn into one Poisson batch (sorted, int64)."""
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample rate must be in (0, 1], got {sample_rate}")
    mask = torch.rand(num_records, generator=generator) < sample_rate
    return torch.nonzero(mask, as_tuple=False).flatten()
