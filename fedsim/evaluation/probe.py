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

    **Selection rule (validation and train data only).**  The candidates are the
    converged probes at each C from the smallest to the largest — most regularised
    first — and, when ``include_reference``, the reference probe as the *incumbent*.

    *Evidence.*  Validation splits are tiny (breast-cancer: ~10 records per client,
    classes missing), so each candidate is scored on every out-of-sample prediction
    available without the test split: the client's validation split, predicted by the
    candidate fitted on the whole train set, and — with ``folds`` = k ≥ 2 — every train
    record, predicted by the candidate fitted on the other k − 1 folds of a stratified
    k-fold split of the train set (seeded by ``(seed, "probe-folds", *tags)``; each
    fold's probes are fitted as the full ones: the converged ones to the same tolerance,
    warm-started at the full fit of the same C, the k reference probes in one batched
    Adam run with tags ``(*tags, "fold", f)``, :func:`train_linear_folds`).  For the global probe of the blend the train set is the
    synthetic (or pooled-real) set, so its folds measure the fit to that set and the
    validation split the transfer to the client's real data.

    *Score.*  Balanced accuracy over the classes present in the evidence,
    BACC = (1/K) Σ_c a_c, and its standard error

        se = sqrt(Σ_c ã_c (1 − ã_c) / n_c) / K,   ã_c = (correct_c + 1) / (n_c + 2)

    (the Agresti–Coull-style ``ã_c`` keeps se > 0 when a class is all right or all
    wrong).

    *Choice.*  With ``m`` = ``standard_errors`` (1 by default):

    1. among the converged probes, the one-standard-error rule: the *first* (most
       regularised) whose score is ≥ ``s* − m · se*`` (``s*`` the best score, ``se*``
       its standard error);
    2. the reference probe stays unless that probe beats it on the same records by
       more than ``m`` standard errors of the *paired* difference,

        Δ = (1/K) Σ_c (w_c − l_c) / n_c,   se_Δ = sqrt(Σ_c [(w̃_c + l̃_c) − (w̃_c − l̃_c)²] / (n_c + 1)) / K,

       with ``w_c`` (``l_c``) the class-c records the challenger gets right and the
       reference wrong (and vice versa), ``w̃_c = (w_c + ½)/(n_c + 1)``, ``l̃_c`` alike
       (half a pseudo-record of each kind, so one discordant record among a handful
       is not evidence).  Records both get right or both get wrong cancel, which
       makes the test far sharper than comparing two unpaired scores.

    Without evidence (an empty validation split and ``folds`` = 0) the reference probe
    (else the most regularised) is chosen.  The test split is never an argument of
    anything here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from fedsim.evaluation.blas import one_blas_thread
from fedsim.evaluation.classifier import LinearProbeConfig, predict_proba, train_linear, train_linear_folds

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
        """Softmax probabilities ``(n, num_classes)``; 0 for classes absent from training
        (BLAS on one thread, :mod:`fedsim.evaluation.blas`)."""
        with one_blas_thread():
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
    ``torch.optim.LBFGS`` on these small problems), from zero or from ``start`` (a warm
    start: a probe fitted on the same data at another C, or on a superset of the data,
    whose classes include these; its rows of the classes present here are used);
    ``weights`` (per record, mean 1) replace the ``w_i`` of ``class_weight``."""
    from scipy.optimize import minimize

    classes, codes = np.unique(np.asarray(y, dtype=np.int64), return_inverse=True)
    n, dim, present = len(codes), x.shape[1], len(classes)
    if present < 2:  # one class seen: it gets probability 1, nothing to fit
        return LogisticProbe(np.zeros((present, dim)), np.zeros(present), classes, num_classes, 0.0, 0)
    features = np.asarray(x, dtype=np.float64)
    features_t = np.ascontiguousarray(features.T)  # (d, n): the logits' product below
    onehot = np.eye(present)[codes]
    scaled = (record_weights(codes, present, class_weight) if weights is None else np.asarray(weights)) / n
    penalty = 1.0 / (2.0 * inverse_l2 * n)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weight, bias = theta[:present * dim].reshape(present, dim), theta[present * dim:]
        logits = _logits(weight, features_t, bias)
        peak = logits.max(axis=1, keepdims=True)
        log_normaliser = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        loss = scaled @ (log_normaliser - (logits * onehot).sum(axis=1)) + penalty * (weight * weight).sum()
        residual = (np.exp(logits - log_normaliser[:, None]) - onehot) * scaled[:, None]
        gradient = np.concatenate([(residual.T @ features + 2.0 * penalty * weight).ravel(), residual.sum(axis=0)])
        return float(loss), gradient

    theta = np.zeros(present * (dim + 1))
    if start is not None and np.isin(classes, start.classes).all():
        rows = np.searchsorted(start.classes, classes)   # the rows of the classes present here
        theta = np.concatenate([start.weight[rows].ravel(), start.bias[rows]])
    with one_blas_thread():  # small products: the thread pool's wake-ups cost more than they do (blas.py)
        result = minimize(objective, theta, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "gtol": tolerance, "ftol": 1e-15, "maxcor": 20})
        _, gradient = objective(result.x)
    return LogisticProbe(result.x[:present * dim].reshape(present, dim).copy(), result.x[present * dim:].copy(),
                         classes, num_classes, float(np.abs(gradient).max()), int(result.nit))


def _logits(weight: np.ndarray, features_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x W^T + b`` as a C-ordered ``(n, K)`` array, computed as ``(W x^T)^T`` from the
    transposed features: 2× faster for the skinny ``K ≈ 10`` product of every objective
    evaluation, and the same bits with OpenBLAS (each entry is the same dot product; the
    C order keeps the row reductions that follow on the same summation order as before;
    ``tests/evaluation/test_probe.py``)."""
    logits = np.ascontiguousarray((weight @ features_t).T)
    logits += bias
    return logits


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
    """The chosen probe of one train set, and how it was chosen (validation and train data only)."""

    name: str                                        # "reference" or "C=<value>"
    probabilities: Probabilities
    candidates: tuple[str, ...] = ()
    val_bacc: tuple[float, ...] = ()                 # each candidate's BACC on the validation split alone
    models: dict = field(default_factory=dict)       # candidate name -> fitted model
    scores: tuple[float, ...] = ()                   # each candidate's BACC on all the evidence (the choice)
    evidence: int = 0                                # records of the evidence (validation + out-of-fold train)


def candidate_name(inverse_l2: float) -> str:
    """``C=<value>`` of a converged candidate."""
    return f"C={inverse_l2:g}"


def fit_probe(x: np.ndarray, y: np.ndarray, num_classes: int, x_val: np.ndarray, y_val: np.ndarray,
              config: LinearProbeConfig, seed: int, *tags: int | str,
              mixture: tuple[np.ndarray, tuple[float, ...]] | None = None,
              folded: np.ndarray | None = None,
              warm: dict[str, LogisticProbe] | None = None) -> FittedProbe:
    """The probe of ``config.preset`` trained on ``(x, y)``; ``tuned`` chooses among its
    candidates on ``(x_val, y_val)`` and out-of-fold predictions of ``(x, y)`` by the
    module's rule (one standard error among the converged probes, then a paired test
    against the reference probe).  ``seed`` and ``tags`` seed the reference probe (as
    :func:`train_linear`) and the folds.  ``mixture = (groups, shares)`` weights the loss
    as :func:`mixture_weights` (within-group class balance for the converged probes as
    ``config.class_weight``, none for the reference probe), in the folds' fits too.
    ``folded`` (a boolean mask over ``(x, y)``, default all) names the records that are
    held out in turn and so become evidence; the others are in every fold's train set
    (``benchmarks/mix_evidence.py`` folds only the data mix's real records this way; the
    protocol folds them all, which validation preferred).
    ``warm`` (candidate name → a probe fitted on the same records under other weights, e.g.
    the previous λ of the data mix) starts each C's fit there instead of at the previous C's
    solution: the same optimum (to the tolerance), fewer iterations."""
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
    converged: dict[str, LogisticProbe] = {}
    for inverse_l2 in sorted(config.inverse_l2):
        start = (warm or {}).get(candidate_name(inverse_l2), previous)
        previous = fit_logistic(x, y, num_classes, inverse_l2, config.class_weight, config.max_iter,
                                config.tolerance, start, weights)
        models[candidate_name(inverse_l2)] = converged[candidate_name(inverse_l2)] = previous
        candidates.append((candidate_name(inverse_l2), previous.probabilities))
    names = tuple(name for name, _ in candidates)
    val_probabilities = [proba(x_val) for _, proba in candidates]
    labels, predictions = np.asarray(y_val), val_probabilities
    if config.folds >= 2:
        folded = np.ones(len(y), dtype=bool) if folded is None else np.asarray(folded, dtype=bool)
        held_out = out_of_fold(x, y, num_classes, config, converged, seed, *tags,
                               weights=weights, reference_weights=reference_weights, folded=folded)
        labels = np.concatenate([labels, np.asarray(y)[folded]])
        predictions = [np.concatenate([p, held_out[name][folded]]) for p, name in zip(val_probabilities, names)]
    scored = [validation_score(labels, p) for p in predictions]
    scores, errors = np.array([s for s, _ in scored]), np.array([e for _, e in scored])
    first = 1 if names[0] == "reference" else 0
    chosen = first + one_standard_error_choice(scores[first:], errors[first:], config.standard_errors)
    if first:  # no evidence: the gain is NaN and the reference stays
        gain, standard_error = paired_gain(labels, predictions[chosen], predictions[0])
        if not gain > config.standard_errors * standard_error:
            chosen = 0
    return FittedProbe(names[chosen], candidates[chosen][1], names,
                       tuple(float(validation_score(y_val, p)[0]) for p in val_probabilities), models,
                       tuple(float(s) for s in scores), len(labels))


def paired_gain(y: np.ndarray, challenger: np.ndarray, incumbent: np.ndarray) -> tuple[float, float]:
    """``(Δ, se_Δ)`` of the module docstring: the challenger's balanced accuracy minus the
    incumbent's on the same records (over the classes present in ``y``) and the paired
    standard error of that difference."""
    y = np.asarray(y)
    if len(y) == 0:
        return float("nan"), float("nan")
    return paired_gain_of_hits(y, challenger.argmax(axis=1) == y, incumbent.argmax(axis=1) == y)


def paired_gain_of_hits(groups: np.ndarray, challenger_right: np.ndarray,
                        incumbent_right: np.ndarray) -> tuple[float, float]:
    """:func:`paired_gain` from the records each classifier gets right, balanced over
    ``groups`` (the labels: balanced accuracy; one group: plain accuracy, as the λ
    guard of :func:`fedsim.evaluation.blend.select_lambdas` uses it)."""
    y = np.asarray(groups)
    if len(y) == 0:
        return float("nan"), float("nan")
    challenger_right, incumbent_right = np.asarray(challenger_right, bool), np.asarray(incumbent_right, bool)
    classes, counts = np.unique(y, return_counts=True)
    wins = np.array([np.sum(challenger_right & ~incumbent_right & (y == c)) for c in classes])
    losses = np.array([np.sum(~challenger_right & incumbent_right & (y == c)) for c in classes])
    smoothed_wins, smoothed_losses = (wins + 0.5) / (counts + 1.0), (losses + 0.5) / (counts + 1.0)
    variance = (smoothed_wins + smoothed_losses - (smoothed_wins - smoothed_losses) ** 2) / (counts + 1.0)
    return float(np.mean((wins - losses) / counts)), float(np.sqrt(variance.sum()) / len(classes))


def stratified_folds(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index in ``[0, folds)`` of each record: the records of each class, in random
    order, dealt round-robin, one class after the other (so every fold holds ⌊n_c/k⌋ or
    ⌈n_c/k⌉ records of class c)."""
    y = np.asarray(y)
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    assignment = np.empty(len(y), dtype=np.int64)
    assignment[order] = np.arange(len(y)) % folds
    return assignment


def out_of_fold(x: np.ndarray, y: np.ndarray, num_classes: int, config: LinearProbeConfig,
                full: dict[str, LogisticProbe], seed: int, *tags: int | str, weights: np.ndarray | None = None,
                reference_weights: np.ndarray | None = None,
                folded: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Candidate name → ``(n, num_classes)`` probabilities of each train record by that
    candidate fitted on the other ``config.folds`` − 1 folds (:func:`stratified_folds`);
    each fold's converged fits start from ``full``'s at the same C (fitted on all of
    ``(x, y)``: near the fold's optimum, so few iterations).  ``weights`` and
    ``reference_weights`` (per record, or None) weight the converged and the reference
    fits as in :func:`fit_probe`, restricted to each fold's kept records.  Only the
    records of the mask ``folded`` (default all) are dealt to folds; the others are kept
    by every fold and their rows of the result stay zero."""
    from fedsim.seeding import numpy_rng

    y = np.asarray(y)
    folded = np.ones(len(y), dtype=bool) if folded is None else np.asarray(folded, dtype=bool)
    assignment = np.full(len(y), -1, dtype=np.int64)
    assignment[folded] = stratified_folds(y[folded], config.folds, numpy_rng(seed, "probe-folds", *tags))
    names = (["reference"] if config.include_reference else []) + [candidate_name(c) for c in config.inverse_l2]
    out = {name: np.zeros((len(y), num_classes)) for name in names}
    kept_by_fold = assignment[None, :] != np.arange(config.folds)[:, None]
    if config.include_reference:
        references = train_linear_folds(x, y, num_classes, config, kept_by_fold, seed, *tags,
                                        weights=reference_weights)
        for fold, reference in enumerate(references):
            held = ~kept_by_fold[fold]
            out["reference"][held] = predict_proba(reference, x[held])
    for fold in range(config.folds):
        held, kept = assignment == fold, assignment != fold
        if not held.any():
            continue
        for inverse_l2 in config.inverse_l2:
            fitted = fit_logistic(x[kept], y[kept], num_classes, inverse_l2, config.class_weight, config.max_iter,
                                  config.tolerance, full[candidate_name(inverse_l2)],
                                  None if weights is None else weights[kept])
            out[candidate_name(inverse_l2)][held] = fitted.probabilities(x[held])
    return out
