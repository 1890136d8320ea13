"""Single-linear-layer classifiers trained full batch, as the reference protocol
(Adam, lr 1e-3, weight decay 5e-4, 100 steps)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedsim.models.init import seeded
from fedsim.validation import check, finite


@dataclass(frozen=True)
class LinearProbeConfig:
    """Options of the downstream linear classifiers (tyro-exposed)."""

    steps: int = 100
    """Full-batch Adam steps."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 5e-4
    """Adam weight decay."""

    def validate(self, prefix: str = "--evaluation.probe.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("steps", self.steps >= 1, "an integer >= 1"),
            ("lr", finite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("weight_decay", finite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
        ])


def train_linear(x: np.ndarray, y: np.ndarray, num_classes: int, config: LinearProbeConfig,
                 seed: int, *tags: int | str) -> nn.Linear:
    """A linear classifier fitted on ``(x, y)`` with full-batch Adam."""
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
