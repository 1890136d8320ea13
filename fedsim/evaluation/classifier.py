"""Options of the downstream linear probes, and the reference probe: a single linear
layer trained full batch as the reference protocol (Adam, lr 1e-3, weight decay 5e-4,
100 steps).  The ``tuned`` preset (:mod:`fedsim.evaluation.probe`) trains multinomial
logistic regression to convergence instead and keeps this probe as one candidate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from fedsim.errors import UserError
from fedsim.models.init import seeded

ProbePreset = Literal["reference", "tuned"]
PROBE_PRESETS: tuple[str, ...] = ("reference", "tuned")


@dataclass(frozen=True)
class LinearProbeConfig:
    """Options of the downstream linear classifiers (tyro-exposed)."""

    preset: ProbePreset = "tuned"
    """reference: 100 full-batch Adam steps as the reference code (parity, far from converged); tuned: multinomial logistic regression trained to convergence (L-BFGS) with its L2 strength chosen per client on its validation split, the reference probe being one candidate."""
    steps: int = 100
    """Reference probe: full-batch Adam steps."""
    lr: float = 1e-3
    """Reference probe: Adam learning rate."""
    weight_decay: float = 5e-4
    """Reference probe: Adam weight decay."""
    inverse_l2: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    """Tuned probe: grid of inverse L2 strengths C (scikit-learn's convention: minimise C·Σ loss + ½‖W‖²)."""
    class_weight: Literal["balanced", "none"] = "balanced"
    """Tuned probe: weight each train record by n / (K_present · n_class) (balanced, matches the balanced-accuracy metric) or not at all."""
    max_iter: int = 500
    """Tuned probe: L-BFGS iterations at most per fit."""
    tolerance: float = 1e-6
    """Tuned probe: stop when the largest absolute gradient entry of the objective is below this."""
    standard_errors: float = 1.0
    """Tuned probe: a candidate within this many standard errors of the best validation score counts as tied, and ties go to the most regularised one (1 = the one-standard-error rule)."""
    include_reference: bool = True
    """Tuned probe: keep the reference probe as a candidate (the most regularised one, preferred on ties)."""

    def validate(self) -> None:
        """Raise a UserError naming the first invalid option."""
        if self.preset not in PROBE_PRESETS:
            raise UserError(f"--evaluation.probe.preset is {self.preset!r}; valid are reference, tuned.")
        if self.steps < 0:
            raise UserError(f"--evaluation.probe.steps is {self.steps}; it must be an integer ≥ 0.")
        if self.preset == "tuned":
            if not self.inverse_l2 and not self.include_reference:
                raise UserError("--evaluation.probe.inverse-l2 is empty and the reference probe is excluded; "
                                "give at least one C > 0.")
            if not all(np.isfinite(c) and c > 0 for c in self.inverse_l2):
                raise UserError(f"--evaluation.probe.inverse-l2 is {self.inverse_l2}; every C must be a number > 0.")
            if self.class_weight not in ("balanced", "none"):
                raise UserError(f"--evaluation.probe.class-weight is {self.class_weight!r}; valid are balanced, none.")
            if not (np.isfinite(self.standard_errors) and self.standard_errors >= 0):
                raise UserError(f"--evaluation.probe.standard-errors is {self.standard_errors}; it must be a number ≥ 0.")
            if self.max_iter < 1:
                raise UserError(f"--evaluation.probe.max-iter is {self.max_iter}; it must be an integer ≥ 1.")
            if not (np.isfinite(self.tolerance) and self.tolerance > 0):
                raise UserError(f"--evaluation.probe.tolerance is {self.tolerance}; it must be a number > 0.")


def train_linear(x: np.ndarray, y: np.ndarray, num_classes: int, config: LinearProbeConfig,
                 seed: int, *tags: int | str) -> nn.Linear:
    """A linear classifier fitted on ``(x, y)`` with full-batch Adam (the reference probe)."""
    with seeded(seed, "linear-probe", *tags):
        model = nn.Linear(x.shape[1], num_classes)
    features = torch.as_tensor(x, dtype=torch.float32)
    targets = torch.as_tensor(y, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(features), targets).backward()
        optimizer.step()
    return model


def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``(n, K)``."""
    with torch.no_grad():
        return torch.softmax(model(torch.as_tensor(x, dtype=torch.float32)), dim=1).numpy()
