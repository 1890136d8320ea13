"""The local CVAE encoder q_ψ(z | x, y) (paper Eq. 1): ``[x ‖ onehot(y)] → hidden… →
(μ, log σ²)``, with log σ² softly bounded for numerical stability."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedsim.models.mlp import mlp

LOGVAR_BOUND = 8.0


class GaussianEncoder(nn.Module):
    """q_ψ(z | x, y) = N(μ_ψ(x, y), diag exp(logvar_ψ(x, y)))."""

    def __init__(self, input_dim: int, num_classes: int, hidden: list[int], latent_dim: int) -> None:
        super().__init__()
        self.net = mlp([input_dim + num_classes, *hidden, 2 * latent_dim])
        self.latent_dim = latent_dim

    def forward(self, x: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = self.net(torch.cat([x, onehot], dim=-1)).split(self.latent_dim, dim=-1)
        return mu, LOGVAR_BOUND * torch.tanh(raw / LOGVAR_BOUND)
