"""Linear probes of the downstream protocol, by preset (``--evaluation.probe.preset``).

``reference``
    The reference code's probe (:func:`fedsim.evaluation.classifier.train_linear`):
    100 full-batch Adam steps from a seeded initialisation.  Far from converged; kept
    for parity with the reference numbers.

``tuned`` (default)
    Multinomial logistic regression trained to convergence: full-batch L-BFGS in
    float64 on

        f(W, b) = (1/n) Σ_i w_i · CE(W x_i + b, y_i) + ‖W‖² / (2 C n),

    i.e. scikit-learn's ``C · Σ_i w_i CE_i + ½‖W‖²`` divided by ``C n`` (the bias is not
    penalised).  ``w_i = n / (K_present · n_{y_i})`` with ``class_weight="balanced"``
    (the downstream metric is balanced accuracy), else 1.  Only the classes present in
    the train set get a row of ``W``; absent classes get probability 0.  The fits run
    from the strongest regularisation (smallest C) to the weakest, each warm-started
    at the previous solution.

    **Selection rule (validation data only).**  The candidates, in this order, are the
    reference probe (when ``include_reference``) and the converged probe at each C
    from the smallest to the largest — most regularised first.  Each is scored on the
    client's *validation* split by balanced accuracy over the classes present there,
    BACC = (1/K_v) Σ_c a_c.  Validation splits are small (~100 records, classes
    missing), so the rule is a one-standard-error rule: with ``s*`` the best score,
    ``se*`` its standard error and ``m`` = ``standard_errors`` (1 by default),

        se = sqrt(Σ_c ã_c (1 − ã_c) / n_c) / K_v,   ã_c = (correct_c + 1) / (n_c + 2)

    (the Agresti–Coull-style ``ã_c`` keeps se > 0 when a class is all right or all
    wrong), the chosen candidate is the *first* one — the most regularised, the
    reference probe before any converged one — whose score is ≥ ``s* − m · se*``.  An
    empty validation split chooses the first candidate.  The test split is never an
    argument of anything here.

Probes trained on synthetic data (the "global" probe of the blend) are chosen on the
client's real validation split in the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from fedsim.evaluation.classifier import LinearProbeConfig, predict_proba, train_linear

if TYPE_CHECKING:
    from torch import nn

Probabilities = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class LogisticProbe:
    """A fitted multinomial logistic regression over the classes present in its train set."""

    weight: np.ndarray        # (K_present, d) float64
    bias: np.ndarray          # (K_present,) float64
    classes: np.ndarray       # (K_present,) class indices in [0, num_classes)
    num_classes: int
    gradient_max: float       # largest absolute gradient entry of f at the solution
    iterations: int           # L-BFGS iterations used

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(n, num_classes)``; 0 for classes absent from training."""
        logits = np.asarray(x, dtype=np.float64) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        present = np.exp(logits)
        present /= present.sum(axis=1, keepdims=True)
        out = np.zeros((len(present), self.num_classes))
        out[:, self.classes] = present
        return out


def record_weights(codes: np.ndarray, present: int, class_weight: str) -> np.ndarray:
    """Per-record loss weights (mean 1): balanced ``n / (K_present · n_class)`` or all ones."""
    if class_weight == "none":
        return np.ones(len(codes))
    counts = np.bincount(codes, minlength=present)
    return len(codes) / (present * counts[codes])


def mixture_weights(y: np.ndarray, groups: np.ndarray, shares: tuple[float, ...], class_weight: str) -> np.ndarray:
    """Per-record weights (mean 1) of ``Σ_g share_g · L_g``, ``L_g`` the mean loss over the
    records of group ``g`` weighted within the group by :func:`record_weights` (shares sum
    to 1; the data-level mix, :mod:`fedsim.evaluation.mixing`)."""
    weights = np.empty(len(y))
    for group, share in enumerate(shares):
        members = groups == group
        codes = np.unique(y[members], return_inverse=True)[1]
        weights[members] = share * len(y) / members.sum() * record_weights(codes, codes.max() + 1, class_weight)
    return weights


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, inverse_l2: float,
                 class_weight: str = "balanced", max_iter: int = 500, tolerance: float = 1e-6,
                 start: LogisticProbe | None = None, weights: np.ndarray | None = None) -> LogisticProbe:
    """Minimise ``f`` of the module docstring by full-batch L-BFGS (float64, analytic
    gradient; SciPy's L-BFGS-B without bounds, ~3× less overhead per iteration than
    ``torch.optim.LBFGS`` on these small problems), from zero or from ``start`` (a probe
    fitted on the same data, for a warm start); ``weights`` (per record, mean 1) replace
    the ``w_i`` of ``class_weight``."""
    from scipy.optimize import minimize

    classes, codes = np.unique(np.asarray(y, dtype=np.int64), return_inverse=True)
    n, dim, present = len(codes), x.shape[1], len(classes)
    if present < 2:  # one class seen: it gets probability 1, nothing to fit
        return LogisticProbe(np.zeros((present, dim)), np.zeros(present), classes, num_classes, 0.0, 0)
    features = np.asarray(x, dtype=np.float64)
    onehot = np.eye(present)[codes]
    scaled = (record_weights(codes, present, class_weight) if weights is None else np.asarray(weights)) / n
    penalty = 1.0 / (2.0 * inverse_l2 * n)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weight, bias = theta[:present * dim].reshape(present, dim), theta[present * dim:]
        logits = features @ weight.T + bias
        peak = logits.max(axis=1, keepdims=True)
        log_normaliser = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        loss = scaled @ (log_normaliser - (logits * onehot).sum(axis=1)) + penalty * (weight * weight).sum()
        residual = (np.exp(logits - log_normaliser[:, None]) - onehot) * scaled[:, None]
        gradient = np.concatenate([(residual.T @ features + 2.0 * penalty * weight).ravel(), residual.sum(axis=0)])
        return float(loss), gradient

    theta = np.zeros(present * (dim + 1))
    if start is not None:
        theta = np.concatenate([start.weight.ravel(), start.bias])
    result = minimize(objective, theta, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "gtol": tolerance, "ftol": 1e-15, "maxcor": 20})
    _, gradient = objective(result.x)
    return LogisticProbe(result.x[:present * dim].reshape(present, dim).copy(), result.x[present * dim:].copy(),
                         classes, num_classes, float(np.abs(gradient).max()), int(result.nit))


def validation_score(y_val: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """Balanced accuracy over the classes present in ``y_val`` and its standard error
    (module docstring); ``(nan, nan)`` for an empty split."""
    if len(y_val) == 0:
        return float("nan"), float("nan")
    predicted = probabilities.argmax(axis=1)
    classes, counts = np.unique(y_val, return_counts=True)
    correct = np.array([np.sum((y_val == c) & (predicted == c)) for c in classes])
    smoothed = (correct + 1.0) / (counts + 2.0)
    standard_error = float(np.sqrt(np.sum(smoothed * (1 - smoothed) / counts)) / len(classes))
    return float(np.mean(correct / counts)), standard_error


def one_standard_error_choice(scores: np.ndarray, standard_errors: np.ndarray, multiple: float = 1.0) -> int:
    """Index of the first candidate scoring ≥ best − multiple · se(best) (candidates
    ordered most regularised first); 0 when no score is defined."""
    if len(scores) == 0 or np.all(np.isnan(scores)):
        return 0
    best = int(np.nanargmax(scores))
    threshold = scores[best] - multiple * standard_errors[best]
    return int(np.flatnonzero(scores >= threshold)[0])


@dataclass(frozen=True, eq=False)
class FittedProbe:
    """The chosen probe of one train set, and how it was chosen (validation only)."""

    name: str                                        # "reference" or "C=<value>"
    probabilities: Probabilities
    candidates: tuple[str, ...] = ()
    val_bacc: tuple[float, ...] = ()
    models: dict = field(default_factory=dict)       # candidate name -> fitted model


def candidate_name(inverse_l2: float) -> str:
    """``C=<value>`` of a converged candidate."""
    return f"C={inverse_l2:g}"


def fit_probe(x: np.ndarray, y: np.ndarray, num_classes: int, x_val: np.ndarray, y_val: np.ndarray,
              config: LinearProbeConfig, seed: int, *tags: int | str,
              mixture: tuple[np.ndarray, tuple[float, ...]] | None = None) -> FittedProbe:
    """The probe of ``config.preset`` trained on ``(x, y)``; ``tuned`` chooses among its
    candidates on ``(x_val, y_val)`` by the module's one-standard-error rule.  ``seed``
    and ``tags`` seed the reference probe (as :func:`train_linear`).  ``mixture = (groups,
    shares)`` weights the loss as :func:`mixture_weights` (within-group class balance for
    the converged probes as ``config.class_weight``, none for the reference probe)."""
    models: dict[str, nn.Linear | LogisticProbe] = {}
    candidates: list[tuple[str, Probabilities]] = []
    weights, reference_weights = None, None
    if mixture is not None:
        weights = mixture_weights(y, mixture[0], mixture[1], config.class_weight)
        reference_weights = mixture_weights(y, mixture[0], mixture[1], "none")
    if config.preset == "reference" or config.include_reference:
        reference = train_linear(x, y, num_classes, config, seed, *tags, weights=reference_weights)
        models["reference"] = reference
        candidates.append(("reference", functools.partial(predict_proba, reference)))
    if config.preset == "reference":
        return FittedProbe("reference", candidates[0][1], ("reference",), (), models)
    previous = None
    for inverse_l2 in sorted(config.inverse_l2):
        previous = fit_logistic(x, y, num_classes, inverse_l2, config.class_weight, config.max_iter,
                                config.tolerance, previous, weights)
        models[candidate_name(inverse_l2)] = previous
        candidates.append((candidate_name(inverse_l2), previous.probabilities))
    scored = [validation_score(y_val, proba(x_val)) for _, proba in candidates]
    scores = np.array([s for s, _ in scored])
    chosen = one_standard_error_choice(scores, np.array([e for _, e in scored]), config.standard_errors)
    return FittedProbe(candidates[chosen][0], candidates[chosen][1], tuple(n for n, _ in candidates),
                       tuple(float(s) for s in scores), models)
