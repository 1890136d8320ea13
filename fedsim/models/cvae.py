"""The DP-CVAE baseline's conditional VAE (Di Salvo, Nguyen & Ledig 2025).

Encoder ``[x ‖ onehot(y)] → 256 → 256 → 256 → (μ, log σ²)`` (latent 100), decoder
``[z ‖ onehot(y)] → 256 → 256 → 256 → d`` (:class:`~fedsim.models.conditional.ConditionalGenerator`).
Per-record loss (Kingma & Welling 2014, β-weighted as the reference):

    ℓ_j = mean_d (u_j − D(μ_j + σ_j ⊙ ε_j, y_j))² + β · Σ_latent KL(N(μ_j, σ_j²) ‖ N(0, I))

with ``u_j`` the record in model space (:class:`~fedsim.models.conditional.FeatureScaler`)
and ``ε_j ~ N(0, I)`` data-independent noise.  It depends on record j only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedsim.models.conditional import ConditionalGenerator, OutputScaling
from fedsim.models.encoder import GaussianEncoder
from fedsim.models.losses import gaussian_kl


class ConditionalVAE(nn.Module):
    """``encoder`` (stays on the client) and ``decoder`` (averaged by the server)."""

    def __init__(self, input_dim: int, num_classes: int, hidden: list[int], latent_dim: int,
                 beta: float, scaling: OutputScaling) -> None:
        super().__init__()
        self.beta = beta
        self.encoder = GaussianEncoder(input_dim, num_classes, hidden, latent_dim)
        self.decoder = ConditionalGenerator(latent_dim, num_classes, hidden, input_dim, scaling)

    def record_terms(self, u: Tensor, onehot: Tensor, eps: Tensor) -> dict[str, Tensor]:
        """Reconstruction and KL of record(s) ``u`` (model space), ``onehot``, noise ``eps``:
        scalars for one record, shape ``(B,)`` for a batch (each row its own record's)."""
        mu, logvar = self.encoder(u, onehot)
        z = mu + (0.5 * logvar).exp() * eps
        reconstruction = (u - self.decoder(z, onehot)).pow(2).mean(dim=-1)
        zero = torch.zeros_like(mu)
        return {"reconstruction": reconstruction, "kl": gaussian_kl(mu, logvar, zero, zero)}

    def forward(self, u: Tensor, onehot: Tensor, eps: Tensor) -> Tensor:
        """ℓ_j (module docstring)."""
        terms = self.record_terms(u, onehot, eps)
        return terms["reconstruction"] + self.beta * terms["kl"]
