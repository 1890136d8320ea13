"""One client's FedHypeVAE model and its per-record objective (paper Eq. 1–7).

The module holds the client's private parts — encoder ψ_i (``encoder``) and code v_i
(``client_code``) — and its copy of the shared hypernetwork Φ = {Φ_θ (``decoder``),
Φ_ω (``prior``)}.  :meth:`record_loss` is the loss of ONE record; under DP-SGD it is
differentiated per record with ``torch.func`` and every term in it depends on that
record only:

    ℓ_j = mean_d (x_j − x̂_j)²                       reconstruction (Eq. 1)
        + β KL(q_ψ(z|x_j,y_j) ‖ p_ω(z|y_j))            analytic KL to the generated prior
        + λ_MMD [ mean_{m,m'} k(x̂_m, x̂_m') − 2 mean_m k(x_j, x̂_m) ]   (Eq. 6, decomposed)

where ``x̂_m ~ p_θ(x|z_m, y_j)``, ``z_m ~ p_ω(z|y_j)`` are synthetic samples of the
record's own class, drawn with noise that does not depend on any data.  Averaged over
a batch this is the class-weighted, class-conditional MMD² up to the parameter-free
real–real term.  (An MMD computed *inside* a batch couples its records and breaks the
per-record clipping bound; docs/design.md, "Privacy model".)

:meth:`regularizer` holds the terms that touch no record (λ_Lip, λ_v of Eq. 5); they
are added to the privatized gradient outside clipping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from fedsim.models.encoder import GaussianEncoder
from fedsim.models.hypernet import HyperDecoder, Modulation
from fedsim.models.losses import gaussian_kl, multi_kernel
from fedsim.models.prior import HyperPrior

if TYPE_CHECKING:  # the config lives with the algorithm; importing it here would be circular
    from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig

SHARED_PREFIXES = ("decoder.", "prior.")


def is_shared(name: str) -> bool:
    """True for parameters of Φ (hypernetwork and prior), False for ψ_i and v_i."""
    return name.startswith(SHARED_PREFIXES)


def spectral_penalty(layers: list[nn.Linear]) -> Tensor:
    """``Σ_ℓ max(0, ‖W_ℓ‖₂ − 1)²``: spectral-norm (Lipschitz) control of Eq. 5."""
    norms = torch.stack([torch.linalg.matrix_norm(layer.weight, ord=2) for layer in layers])
    return torch.relu(norms - 1.0).pow(2).sum()


class FedHypeVAEModel(nn.Module):
    """Encoder ψ_i, client code v_i and the client's copy of Φ = {Φ_θ, Φ_ω}."""

    def __init__(self, input_dim: int, num_classes: int, config: FedHypeVAEConfig,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        hidden = [config.hidden_dim] * config.hidden_layers
        self.config = config
        self.num_classes = num_classes
        self.encoder = GaussianEncoder(input_dim, num_classes, hidden, config.latent_dim)
        self.decoder = HyperDecoder(config.code_dim, config.latent_dim, num_classes, hidden,
                                    input_dim, config.hyper_hidden)
        self.prior = HyperPrior(config.code_dim, num_classes, config.latent_dim,
                                context_dim=config.hyper_hidden, label_dim=config.label_dim,
                                hidden=config.hyper_hidden)
        code = torch.randn(config.code_dim, generator=generator)  # v_i ~ N(0, I)
        self.client_code = nn.Parameter(project_to_ball(code, config.code_radius))

    # --- generation -----------------------------------------------------------------
    def generated(self, code: Tensor) -> tuple[Modulation, Tensor]:
        """``(h_θ(v), h_ω(v))``; the ablation without hypernetwork ignores the code."""
        if not self.config.hypernetwork:
            code = torch.zeros_like(code)
        return self.decoder.generate(code), self.prior.context(code)

    def sample(self, modulation: Modulation, context: Tensor, onehot: Tensor, noise: Tensor) -> Tensor:
        """Decoder means for ``z = μ_{v,y} + σ_{v,y} ⊙ noise`` (Eq. 12; one row per label)."""
        mu, log_sigma = self.prior(context, onehot)
        return self.decoder.decode(modulation, mu + log_sigma.exp() * noise, onehot)

    # --- objective ----------------------------------------------------------------
    def record_terms(self, x: Tensor, onehot: Tensor, eps_z: Tensor, mmd_noise: Tensor,
                     code: Tensor | None = None) -> dict[str, Tensor]:
        """Loss terms of one record ``(x (d,), onehot (K,))`` (module docstring).

        ``eps_z`` (latent,) is the reparameterisation noise of this record;
        ``mmd_noise`` (M, latent) is data-independent noise shared by all records.
        ``code`` defaults to v_i.  Batched form (ghost clipping, :meth:`batch_losses`): ``x``
        (B, d), ``onehot`` (B, K), ``eps_z`` (B, latent) and ``code`` (B, d_v), one copy of
        v_i per record, so that every term of record j is computed from row j alone."""
        mu_q, logvar_q = self.encoder(x, onehot)
        z = mu_q + (0.5 * logvar_q).exp() * eps_z
        modulation, context = self.generated(self.client_code if code is None else code)
        reconstruction = (x - self.decoder.decode(modulation, z, onehot)).pow(2).mean(dim=-1)
        mu_p, log_sigma_p = self.prior(context, onehot)
        kl = gaussian_kl(mu_q, logvar_q, mu_p, log_sigma_p)
        terms = {"reconstruction": reconstruction, "kl": kl}
        if self.config.lambda_mmd > 0:
            terms["mmd"] = self.mmd_term(modulation, context, x, onehot, mmd_noise)
        return terms

    def mmd_term(self, modulation: Modulation, context: Tensor, x: Tensor, onehot: Tensor,
                 mmd_noise: Tensor) -> Tensor:
        """Record j's part of the class-conditional MMD² (Eq. 6, decomposed; module docstring)."""
        labels = onehot.unsqueeze(-2).expand(*onehot.shape[:-1], mmd_noise.shape[0], onehot.shape[-1])
        synthetic = self.sample(modulation, context, labels, mmd_noise)
        term: Tensor = (multi_kernel(synthetic, synthetic).mean(dim=(-2, -1))
                        - 2.0 * multi_kernel(x.unsqueeze(-2), synthetic).mean(dim=(-2, -1)))
        return term

    def record_mmd(self, x: Tensor, onehot: Tensor, mmd_noise: Tensor) -> Tensor:
        """The MMD term alone for the client's own generator h(v_i): the per-record loss of
        the small-footprint DP-SGD step (``--fedhypevae.dp-sgd-parameters codes-heads``),
        which touches neither the encoder nor the KL."""
        modulation, context = self.generated(self.client_code)
        return self.mmd_term(modulation, context, x, onehot, mmd_noise)

    def record_loss(self, x: Tensor, onehot: Tensor, eps_z: Tensor, mmd_noise: Tensor,
                    code: Tensor | None = None) -> Tensor:
        """ℓ_j: the scalar per-record loss (depends on record j only); batched as
        :meth:`record_terms`, one loss per record."""
        terms = self.record_terms(x, onehot, eps_z, mmd_noise, code)
        loss = terms["reconstruction"] + self.config.beta * terms["kl"]
        if "mmd" in terms:
            loss = loss + self.config.lambda_mmd * terms["mmd"]
        return loss

    def batch_losses(self, x: Tensor, onehot: Tensor, eps_z: Tensor,
                     mmd_noise: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(ℓ_j)_{j∈B}`` for a batch, each from its own copy of v_i, and that copy
        ``{"client_code": (B, d_v)}``: the input of ghost clipping
        (:class:`~fedsim.privacy.clipped_sums.GhostClippedSum`), whose per-record norms need
        every parameter's use to be separable by record."""
        codes = self.client_code.expand(x.shape[0], -1)
        return self.record_loss(x, onehot, eps_z, mmd_noise, codes), {"client_code": codes}

    def regularizer(self) -> Tensor:
        """λ_Lip R_Lip(h_θ, h_ω) + λ_v ‖v_i‖² (Eq. 5): touches no record."""
        penalty = self.config.lambda_v * self.client_code.pow(2).sum()
        if self.config.lambda_lip > 0:
            layers = self.decoder.hyper_layers() + self.prior.hyper_layers()
            penalty = penalty + self.config.lambda_lip * spectral_penalty(layers)
        return penalty

    def forward(self, x: Tensor, onehot: Tensor, eps_z: Tensor, mmd_noise: Tensor) -> Tensor:
        return self.record_loss(x, onehot, eps_z, mmd_noise)


def project_to_ball(code: Tensor, radius: float) -> Tensor:
    """Project ``code`` onto ``{v : ‖v‖₂ ≤ radius}``."""
    norm = code.norm()
    return code * (radius / norm) if norm > radius else code
