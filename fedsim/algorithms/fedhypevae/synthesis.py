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
    """(K_classes, d) per-class, per-dimension observation std s_y of Eq. 12
    (:func:`observation_std`); None: the decoder mean alone (the paper)."""

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
                x = x + self.observation_std[labels] * torch.randn(x.shape, generator=generator)
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


OBSERVATION_SAMPLES = 512


def observation_std(artifact: GeneratorArtifact, moments: ClassMoments, generator: torch.Generator) -> Tensor:
    """s_y of Eq. 12 with observation noise, per class y and dimension: ``s_y² = max(0,
    diag Σ̂_y − Var_z[x̂(z, y)])``, the DP (pooled, post-processed) variance the decoder mean
    at the meta-code does not produce (``Var_z`` over ``OBSERVATION_SAMPLES`` prior draws).
    Classes without a trustworthy count take the mean of the valid classes' s_y²."""
    model = artifact.build()
    covariances = moments.covariances
    target = covariances.diagonal(dim1=1, dim2=2) if covariances.dim() == 3 else covariances
    variances = torch.zeros_like(target)
    with torch.no_grad():
        modulation, context = mixed_generation(model, artifact.codes, artifact.weights)
        noise = torch.randn(OBSERVATION_SAMPLES, artifact.config.latent_dim, generator=generator)
        for y in range(artifact.num_classes):
            onehot = torch.zeros(OBSERVATION_SAMPLES, artifact.num_classes)
            onehot[:, y] = 1.0
            decoded = model.sample(modulation, context, onehot, noise)
            variances[y] = (target[y] - decoded.var(dim=0)).clamp_min(0.0)
    valid = moments.valid
    if bool(valid.any()) and not bool(valid.all()):
        variances[~valid] = variances[valid].mean(dim=0)
    return variances.sqrt()
