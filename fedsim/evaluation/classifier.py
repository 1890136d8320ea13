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

from fedsim.models.init import seeded
from fedsim.validation import check, finite

ProbePreset = Literal["reference", "tuned"]
PROBE_PRESETS: tuple[str, ...] = ("reference", "tuned")


@dataclass(frozen=True)
class LinearProbeConfig:
    """Options of the downstream linear classifiers (tyro-exposed)."""

    preset: ProbePreset = "tuned"
    """reference: 100 full-batch Adam steps as the reference code (parity, far from converged); tuned: multinomial logistic regression trained to convergence (L-BFGS) with its L2 strength chosen per client on its validation split and out-of-fold predictions of its train set, the reference probe kept unless significantly worse."""
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
    """Tuned probe: a converged candidate within this many standard errors of the best score counts as tied, ties going to the most regularised one (1 = the one-standard-error rule); the reference probe is replaced only by a gain of more than this many paired standard errors."""
    folds: int = 5
    """Tuned probe: also score every candidate on out-of-fold predictions of its own train set (stratified k-fold, k = this) besides the validation split; 0 = the validation split alone."""
    include_reference: bool = True
    """Tuned probe: keep the reference probe as the incumbent candidate (replaced only by a converged probe significantly better on the evidence)."""

    def validate(self, prefix: str = "--evaluation.probe.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("preset", self.preset in PROBE_PRESETS, "one of " + ", ".join(PROBE_PRESETS)),
            ("steps", self.steps >= 1, "an integer >= 1"),
            ("lr", finite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("weight_decay", finite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("inverse_l2", all(finite(c) and c > 0 for c in self.inverse_l2)
             and (len(self.inverse_l2) > 0 or self.include_reference),
             "one or more numbers > 0 (or the reference probe included)"),
            ("class_weight", self.class_weight in ("balanced", "none"), "one of balanced, none"),
            ("max_iter", self.max_iter >= 1, "an integer >= 1"),
            ("tolerance", finite(self.tolerance) and self.tolerance > 0, "a finite number > 0"),
            ("standard_errors", finite(self.standard_errors) and self.standard_errors >= 0, "a finite number >= 0"),
            ("folds", self.folds == 0 or self.folds >= 2, "0 or an integer >= 2"),
        ])


def feature_tensor(x: np.ndarray) -> torch.Tensor:
    """``x`` as a float32 tensor, sharing memory where it can; a read-only array (a Ray
    object store's) is copied, as torch cannot share it without a warning."""
    array = np.asarray(x, dtype=np.float32)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def train_linear(x: np.ndarray, y: np.ndarray, num_classes: int, config: LinearProbeConfig,
                 seed: int, *tags: int | str, weights: np.ndarray | None = None) -> nn.Linear:
    """A linear classifier fitted on ``(x, y)`` with full-batch Adam (the reference probe);
    ``weights`` (per record, mean 1) weight the cross-entropy, as the data-level mix
    (:mod:`fedsim.evaluation.mixing`) needs."""
    with seeded(seed, "linear-probe", *tags):
        model = nn.Linear(x.shape[1], num_classes)
    features = feature_tensor(x)
    targets = torch.as_tensor(y, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scale = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    for _ in range(config.steps):
        optimizer.zero_grad()
        if scale is None:
            nn.functional.cross_entropy(model(features), targets).backward()
        else:
            (scale * nn.functional.cross_entropy(model(features), targets, reduction="none")).mean().backward()
        optimizer.step()
    return model


def train_linear_folds(x: np.ndarray, y: np.ndarray, num_classes: int, config: LinearProbeConfig,
                       kept: np.ndarray, seed: int, *tags: int | str,
                       weights: np.ndarray | None = None) -> list[nn.Linear]:
    """The reference probes of the folds of a cross-validation: probe ``f`` is trained on
    the records where ``kept[f]`` is true (``kept``: ``(k, n)`` bool), initialised as
    :func:`train_linear` with tags ``(*tags, "fold", f)``.  One batched computation: the
    loss is the sum of the k probes' mean cross-entropies, so each probe's gradient is
    its own loss's, and Adam (weight decay included) updates elementwise, so each probe
    follows the trajectory of its own :func:`train_linear` (up to float rounding) at
    the Python overhead of one.  ``weights`` (per record) weight each probe's
    cross-entropy as in :func:`train_linear`: probe ``f`` minimises the mean over its
    kept records of ``w_i · loss_i``."""
    models = []
    for fold in range(len(kept)):
        with seeded(seed, "linear-probe", *tags, "fold", fold):
            models.append(nn.Linear(x.shape[1], num_classes))
    weight = torch.stack([m.weight.detach() for m in models]).requires_grad_()   # (k, K, d)
    bias = torch.stack([m.bias.detach() for m in models]).requires_grad_()       # (k, K)
    features = feature_tensor(x)
    targets = torch.as_tensor(y, dtype=torch.long).repeat(len(kept))
    record_weight = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    share = torch.as_tensor(kept * record_weight / np.maximum(kept.sum(axis=1, keepdims=True), 1), dtype=torch.float32)
    optimizer = torch.optim.Adam([weight, bias], lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.steps):
        optimizer.zero_grad()
        logits = torch.matmul(features, weight.transpose(1, 2)) + bias[:, None, :]   # (k, n, K)
        losses = nn.functional.cross_entropy(logits.reshape(-1, num_classes), targets, reduction="none")
        (losses.reshape(share.shape) * share).sum().backward()
        optimizer.step()
    with torch.no_grad():
        for fold, model in enumerate(models):
            model.weight.copy_(weight[fold])
            model.bias.copy_(bias[fold])
    return models


def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``(n, K)``."""
    with torch.no_grad():
        return torch.softmax(model(feature_tensor(x)), dim=1).numpy()
