"""Conditional generators of the baselines (DP-CVAE decoder, DP-CGAN generator) and
the data-independent feature scaling they train in.

The DP-CVAE reference min–max scales every feature with the data's own minimum and
maximum and ends its decoder with a sigmoid.  Those ranges are a non-private
function of the data (they move when one extreme record is removed), so fedsim
offers two data-independent choices (:class:`OutputScaling`):

* ``sigmoid``: features are clipped to a *public* range ``[low, high]`` fixed before
  seeing data, mapped to ``[0, 1]`` by ``u = (clip(x) − low) / (high − low)``, and the
  network ends in a sigmoid; samples are mapped back by ``x = low + (high − low)·u``;
* ``linear``: no scaling, identity output (works at any feature scale).

Clipping each record to a fixed box is a per-record map, so it is covered by the
per-record DP-SGD analysis like any other preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from fedsim.errors import UserError
from fedsim.models.mlp import mlp
from fedsim.validation import check, finite


@dataclass(frozen=True)
class OutputScaling:
    """Data-independent feature scaling of a generator (see fedsim.models.conditional)."""

    output: Literal["sigmoid", "linear"] = "linear"
    """sigmoid: the reference's sigmoid output on features min–max scaled with the PUBLIC range [low, high] (records clipped to it); linear: raw features, identity output."""
    low: float = -3.0
    """Public lower bound of every feature (sigmoid output only); set it from knowledge of the encoder, never from the data."""
    high: float = 3.0
    """Public upper bound of every feature (sigmoid output only)."""

    def validate(self, prefix: str) -> None:
        """Raise a ``UserError`` naming the first invalid option (``prefix``: e.g. ``--dp-cvae.scaling.``)."""
        check(self, prefix, [(name, finite(getattr(self, name)), "a finite number") for name in ("low", "high")])
        if self.output == "sigmoid" and not self.high > self.low:
            raise UserError(f"{prefix}high ({self.high}) must be greater than {prefix}low ({self.low}) "
                            f"with {prefix}output sigmoid.")


class FeatureScaler(nn.Module):
    """``x ↔ u``: data space to model space and back (:class:`OutputScaling`)."""

    def __init__(self, scaling: OutputScaling) -> None:
        super().__init__()
        self.sigmoid = scaling.output == "sigmoid"
        self.low, self.span = float(scaling.low), float(scaling.high - scaling.low)

    def to_model(self, x: Tensor) -> Tensor:
        if not self.sigmoid:
            return x
        return ((x - self.low) / self.span).clamp(0.0, 1.0)

    def to_data(self, u: Tensor) -> Tensor:
        return self.low + self.span * u if self.sigmoid else u

    def activation(self, h: Tensor) -> Tensor:
        return torch.sigmoid(h) if self.sigmoid else h


class ConditionalGenerator(nn.Module):
    """``[z ‖ onehot(y)] → hidden… → d``, output in model space (:meth:`forward`) or
    data space (:meth:`generate`)."""

    def __init__(self, latent_dim: int, num_classes: int, hidden: list[int], output_dim: int,
                 scaling: OutputScaling, activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.net = mlp([latent_dim + num_classes, *hidden, output_dim], activation)
        self.scaler = FeatureScaler(scaling)

    def forward(self, z: Tensor, onehot: Tensor) -> Tensor:
        """Model-space output (in [0, 1] with the sigmoid scaling)."""
        return self.scaler.activation(self.net(torch.cat([z, onehot], dim=-1)))

    @torch.no_grad()
    def generate(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        """Data-space samples ``x̂ = G(z, y)``, ``z ~ N(0, I)``, one per label."""
        onehot = nn.functional.one_hot(labels, self.num_classes).float()
        z = torch.randn(len(labels), self.latent_dim, generator=generator)
        return self.scaler.to_data(self(z, onehot))


class LeakyReLU02(nn.LeakyReLU):
    """LeakyReLU with slope 0.2 (the DP-CGAN reference)."""

    def __init__(self) -> None:
        super().__init__(0.2)
