"""The shared generator released after training, and sampling from it (Eq. 12–13).

A :class:`GeneratorArtifact` is everything public after a FedHypeVAE run: Φ (decoder
and prior state), the fitted meta-code(s) v_o (or v_1..v_K with mixture weights π),
and the DP label distribution.  All of it is post-processing of DP outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.models.fedhypevae import FedHypeVAEModel
from fedsim.models.hypernet import Modulation, mix_modulations
from fedsim.models.init import seeded
from fedsim.privacy.statistics import ClassMoments


@dataclass(frozen=True)
class GeneratorArtifact:
    """The public generator of a FedHypeVAE run."""

    shared_state: dict[str, Tensor]
    codes: Tensor               # (K, d_v) meta-codes
    weights: Tensor             # (K,) mixture weights π, Σ π = 1
    label_distribution: Tensor  # (K_classes,) DP label distribution
    input_dim: int
    num_classes: int
    config: FedHypeVAEConfig
    released_records: float | None = None
    """Σ of the released noisy class counts (a DP count of all train records)."""
    observation_std: Tensor | None = None
    """The observation noise of Eq. 12 (:func:`observation_std`): ``(K_classes, d)``, the
    per-class, per-dimension std s_y (diagonal statistics), or ``(K_classes, d, d)``, a square
    root S_y (S_y S_yᵀ = R_y) of the per-class residual covariance (full statistics); None:
    the decoder mean alone (the paper)."""

    def build(self) -> FedHypeVAEModel:
        """A model holding Φ (its encoder and client code are unused).  Built under a
        fixed seed so that building never advances the global torch RNG."""
        with seeded(0, "generator-artifact"):
            model = FedHypeVAEModel(self.input_dim, self.num_classes, self.config)
        model.load_state_dict(self.shared_state, strict=False)
        model.eval()
        return model

    def sample(self, labels: np.ndarray | Tensor, generator: torch.Generator,
               model: FedHypeVAEModel | None = None) -> np.ndarray:
        """Synthetic embeddings for the given labels: ``z ~ p_{ω_mix}(z|y)``,
        ``x̂ = decoder_{θ_mix}(z, y)`` (Eq. 12–13)."""
        model = model or self.build()
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        onehot = torch.nn.functional.one_hot(labels, self.num_classes).float()
        with torch.no_grad():
            modulation, context = mixed_generation(model, self.codes, self.weights)
            noise = torch.randn(len(labels), self.config.latent_dim, generator=generator)
            x = model.sample(modulation, context, onehot, noise)
            if self.observation_std is not None:
                x = x + observation_noise(self.observation_std, labels, torch.randn(x.shape, generator=generator))
        return x.numpy().astype(np.float32)

    def sample_labels(self, size: int, generator: torch.Generator) -> np.ndarray:
        """Labels drawn from the DP label distribution."""
        draws = torch.multinomial(self.label_distribution, size, replacement=True, generator=generator)
        return draws.numpy().astype(np.int64)


def mixed_generation(model: FedHypeVAEModel, codes: Tensor, weights: Tensor) -> tuple[Modulation, Tensor]:
    """Eq. 13: ``θ_mix = Σ π_k h_θ(v_k)``, ``ω_mix = Σ π_k h_ω(v_k)`` (K = 1: Eq. 12)."""
    parts = [model.generated(code) for code in codes]
    modulation = mix_modulations([m for m, _ in parts], weights)
    context = torch.einsum("k,kc->c", weights, torch.stack([c for _, c in parts]))
    return modulation, context


def synthesize(artifact: GeneratorArtifact, size: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A labelled synthetic set of ``size`` records, labels from the DP label distribution."""
    from fedsim.algorithms.base import synthesize as synthesize_from

    return synthesize_from(artifact, size, generator)


def observation_noise(observation_std: Tensor, labels: Tensor, standard_normal: Tensor) -> Tensor:
    """The observation noise of Eq. 12 for records of class ``labels``: ``s_y ⊙ ε`` (diagonal,
    ``(K, d)``) or ``S_y ε`` (full, ``(K, d, d)``), from the standard normal draws ``ε``."""
    if observation_std.dim() == 2:
        return observation_std[labels] * standard_normal
    noise = torch.empty_like(standard_normal)
    for y in torch.unique(labels):  # one (n_y, d) × (d, d) product per class, no (n, d, d) gather
        rows = labels == y
        noise[rows] = standard_normal[rows] @ observation_std[y].T
    return noise


OBSERVATION_SAMPLES = 512


def observation_std(artifact: GeneratorArtifact, moments: ClassMoments, generator: torch.Generator) -> Tensor:
    """The observation noise of Eq. 12, per class y: the DP (pooled, post-processed) second
    moments the decoder mean at the meta-code does not produce (``Cov_z`` over
    ``OBSERVATION_SAMPLES`` prior draws).  Diagonal statistics: ``s_y² = max(0, diag Σ̂_y −
    Var_z[x̂(z, y)])`` per dimension, returned as s_y ``(K, d)``.  Full statistics: the residual
    ``R_y = Σ̂_y − Cov_z[x̂(z, y)]`` projected on the PSD cone (negative eigenvalues set to 0),
    returned as ``S_y = V_y Λ_y^½`` ``(K, d, d)``, so that the sample covariance is Σ̂_y's
    wherever the decoder's is below it.  Classes without a trustworthy count take the mean of
    the valid classes' residual."""
    model = artifact.build()
    covariances = moments.covariances
    full = covariances.dim() == 3
    residuals = torch.zeros_like(covariances)
    with torch.no_grad():
        modulation, context = mixed_generation(model, artifact.codes, artifact.weights)
        noise = torch.randn(OBSERVATION_SAMPLES, artifact.config.latent_dim, generator=generator)
        for y in range(artifact.num_classes):
            onehot = torch.zeros(OBSERVATION_SAMPLES, artifact.num_classes)
            onehot[:, y] = 1.0
            decoded = model.sample(modulation, context, onehot, noise)
            if full:
                residuals[y] = covariances[y] - torch.cov(decoded.T)
            else:
                residuals[y] = (covariances[y] - decoded.var(dim=0)).clamp_min(0.0)
    valid = moments.valid
    if bool(valid.any()) and not bool(valid.all()):
        residuals[~valid] = residuals[valid].mean(dim=0)
    if not full:
        return residuals.sqrt()
    symmetric = 0.5 * (residuals + residuals.transpose(1, 2)).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(symmetric)
    factors: Tensor = (eigenvectors * eigenvalues.clamp_min(0.0).sqrt().unsqueeze(1)).to(covariances.dtype)
    return factors
