"""The DP-CGAN baseline's networks (conditional GAN, Mirza & Osindero 2014; DP on the
discriminator as in DP-GAN, Xie et al. 2018).

Generator ``[z(100) ‖ onehot(y)] → 512 → 1024 → d``, discriminator
``[x ‖ onehot(y)] → 1024 → 512 → 1`` (logit), LeakyReLU(0.2) in both.

Discriminator loss (non-saturating GAN loss, Goodfellow et al. 2014), split by
what it reads:

    L(D) = (1/(q·n)) Σ_{j∈B} softplus(−D(u_j, y_j))            real part: per record, clipped
         + mean_m softplus(D(G(z_m, ỹ_m), ỹ_m))                fake part: no real record

The fake labels ỹ_m come from the client's DP label distribution and z_m ~ N(0, I),
so the fake part is a function of DP outputs and public noise only and is added
outside clipping (docs/design.md, "The DP trainer": record-free terms).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedsim.models.conditional import ConditionalGenerator, LeakyReLU02, OutputScaling
from fedsim.models.mlp import mlp


class ConditionalGAN(nn.Module):
    """``generator`` (averaged by the server) and ``discriminator`` (stays on the client)."""

    def __init__(self, input_dim: int, num_classes: int, latent_dim: int, generator_hidden: list[int],
                 discriminator_hidden: list[int], scaling: OutputScaling) -> None:
        super().__init__()
        self.generator = ConditionalGenerator(latent_dim, num_classes, generator_hidden, input_dim,
                                              scaling, LeakyReLU02)
        self.discriminator = mlp([input_dim + num_classes, *discriminator_hidden, 1], LeakyReLU02)

    def critic(self, u: Tensor, onehot: Tensor) -> Tensor:
        """Discriminator logit(s) of ``u`` (model space) with label ``onehot``."""
        return self.discriminator(torch.cat([u, onehot], dim=-1)).squeeze(-1)

    def forward(self, u: Tensor, onehot: Tensor) -> Tensor:
        """Real part of the discriminator loss for record(s) ``u`` (module docstring)."""
        return nn.functional.softplus(-self.critic(u, onehot))

    def fake_loss(self, fake: Tensor, onehot: Tensor) -> Tensor:
        """Fake part ``mean softplus(D(x̂, ỹ))`` (touches no real record)."""
        return nn.functional.softplus(self.critic(fake, onehot)).mean()

    def generator_loss(self, z: Tensor, onehot: Tensor) -> Tensor:
        """Non-saturating generator loss ``mean softplus(−D(G(z, y), y))``; no real record."""
        return nn.functional.softplus(-self.critic(self.generator(z, onehot), onehot)).mean()
