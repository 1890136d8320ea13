"""The hyper-generated class-conditional prior of FedHypeVAE (paper Eq. 4).

    (μ_{v,y}, log σ_{v,y}) = g_ω(h_ω(v), e(y)),   p_ω(z | y) = N(μ_{v,y}, diag σ²_{v,y}).

``e(y)`` is a learnable label embedding, applied to a one-hot label (a linear map, so
it works under ``vmap``).  ``log σ`` is softly bounded to ``[-LOG_SIGMA_BOUND,
LOG_SIGMA_BOUND]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedsim.models.hypernet import align_rows
from fedsim.models.mlp import mlp

LOG_SIGMA_BOUND = 3.0


class HyperPrior(nn.Module):
    """Φ_ω: ``h_ω`` (code → context), ``e`` (label embedding) and ``g_ω`` (→ μ, log σ)."""

    def __init__(self, code_dim: int, num_classes: int, latent_dim: int, context_dim: int,
                 label_dim: int, hidden: int) -> None:
        super().__init__()
        self.h_omega = mlp([code_dim, hidden, context_dim])
        self.label_embedding = nn.Linear(num_classes, label_dim, bias=False)
        self.g_omega = mlp([context_dim + label_dim, hidden, 2 * latent_dim])
        self.latent_dim = latent_dim

    def context(self, code: Tensor) -> Tensor:
        """``h_ω(v)``."""
        return self.h_omega(code)

    def forward(self, context: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, log σ)`` of p_ω(z|y) for a context ``h_ω(v)`` and one-hot labels (a record's
        context applies to each of its labels: ``context`` (B, c) with ``onehot`` (B, T, K))."""
        embedding = self.label_embedding(onehot)
        context = align_rows(context, embedding).expand(*embedding.shape[:-1], context.shape[-1])
        mu, raw = self.g_omega(torch.cat([context, embedding], dim=-1)).split(self.latent_dim, dim=-1)
        return mu, LOG_SIGMA_BOUND * torch.tanh(raw / LOG_SIGMA_BOUND)

    def hyper_layers(self) -> list[nn.Linear]:
        """The layers of h_ω and g_ω (targets of the Lipschitz penalty)."""
        return [m for m in [*self.h_omega, *self.g_omega] if isinstance(m, nn.Linear)]
