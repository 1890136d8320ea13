"""The reference downstream protocol: blending a local and a global classifier.

Each client has a "local" classifier (trained on its real train split) and a "global"
one (trained on synthetic data, or a federated model).  For λ in a grid,

    p_λ(x) = λ · softmax(local)(x) + (1 − λ) · softmax(global)(x).

λ is chosen on *validation* data only, either one λ for all clients (``global`` rule:
the best mean validation score across clients, as the reference) or one per client
(``per-client`` rule).  The score is ``--evaluation.lambda-metric``: validation accuracy
(``accuracy``, the reference's) or validation balanced accuracy over the classes present
in the client's validation split (``balanced``, the metric the tables report).  The
per-client rule is guarded (``--evaluation.lambda-guard m``, default 1): the
validation-best λ replaces λ = 1 (the local classifier alone, no use of the shared data)
only when it beats λ = 1 by more than ``m`` paired standard errors of the score's
difference on the client's validation records
(:func:`fedsim.evaluation.probe.paired_gain_of_hits`: one group for accuracy, the classes
for balanced accuracy); a validation split of a few dozen records otherwise picks a blend
that is better on it by chance and worse on test (measured in README, "Methods and the
paper's Table 1").  Test metrics are computed for every λ but never read by the
choice; the reported figure is the test metric at the chosen λ.  With a global test
set (:mod:`fedsim.evaluation.global_test`) the same blend is also scored on it, as
``global_acc``, ``global_bacc`` and ``global_f1`` (never read by the choice either).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np

from fedsim.evaluation.metrics import classification_metrics
from fedsim.evaluation.probe import paired_gain_of_hits

DEFAULT_LAMBDAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
SelectionRule = Literal["global", "per-client"]
LambdaMetric = Literal["accuracy", "balanced"]


@dataclass(frozen=True)
class ClientEvaluation:
    """One client's validation accuracy and test metrics at every λ of the grid."""

    client_id: int
    lambdas: tuple[float, ...]
    val_acc: np.ndarray                       # (L,)
    test: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (L,)
    probes: dict[str, str] = field(default_factory=dict)       # "local"/"global" -> chosen probe (validation only)
    val_right: np.ndarray | None = None       # (L, n_val) bool: each λ's correct validation records (the guard)
    val_labels: np.ndarray | None = None      # (n_val,) the validation labels (balanced scores and guard)

    def val_scores(self, metric: LambdaMetric) -> np.ndarray:
        """Each λ's validation score: accuracy (``val_acc``) or balanced accuracy over the
        classes present in the validation split (from ``val_right`` and ``val_labels``;
        NaN for an empty split)."""
        if metric == "accuracy":
            return np.asarray(self.val_acc, dtype=float)
        if self.val_right is None or self.val_labels is None:
            raise ValueError(f"client {self.client_id}: balanced validation scores need val_right and val_labels")
        return balanced_hit_rates(self.val_labels, self.val_right)


def blend_evaluation(client_id: int, y_val: np.ndarray, y_test: np.ndarray,
                     local_val: np.ndarray, global_val: np.ndarray,
                     local_test: np.ndarray, global_test: np.ndarray,
                     lambdas: Sequence[float] = DEFAULT_LAMBDAS,
                     probes: dict[str, str] | None = None,
                     global_test_set: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> ClientEvaluation:
    """Evaluate ``p_λ`` on the validation and test splits for every λ (``probes`` names
    the chosen probes, for the record); with ``global_test_set = (y, local, global)``
    (labels and both classifiers' probabilities on the global test set) also on it."""
    val_acc: list[float] = []
    val_right: list[np.ndarray] = []
    test: dict[str, list[float]] = {"acc": [], "bacc": [], "f1": []}
    if global_test_set is not None:
        test.update({"global_acc": [], "global_bacc": [], "global_f1": []})
    for lam in lambdas:
        blended_val = lam * local_val + (1 - lam) * global_val
        val_acc.append(classification_metrics(y_val, blended_val)["acc"])
        val_right.append(validation_hits(y_val, blended_val))
        scores = classification_metrics(y_test, lam * local_test + (1 - lam) * global_test)
        if global_test_set is not None:
            y_global, local_global, global_global = global_test_set
            pooled = classification_metrics(y_global, lam * local_global + (1 - lam) * global_global)
            scores = scores | {f"global_{name}": value for name, value in pooled.items()}
        for name in test:
            test[name].append(scores[name])
    return ClientEvaluation(client_id, tuple(lambdas), np.asarray(val_acc),
                            {k: np.asarray(v) for k, v in test.items()}, dict(probes or {}),
                            np.stack(val_right).reshape(len(val_right), len(y_val)), np.asarray(y_val))


def validation_hits(y_val: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Which validation records a classifier gets right (``argmax`` = label), for the λ guard."""
    y_val = np.asarray(y_val)
    if len(y_val) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(probabilities).reshape(len(y_val), -1).argmax(axis=1) == y_val


def balanced_hit_rates(labels: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``(L,)`` balanced accuracy of each row of ``right`` (``(L, n)`` bool: which of the
    ``n`` records each classifier gets right), the mean over the classes present in
    ``labels`` of the per-class hit rate; NaN when ``n`` = 0."""
    labels, right = np.asarray(labels), np.asarray(right, dtype=float).reshape(-1, len(labels))
    if len(labels) == 0:
        return np.full(len(right), np.nan)
    classes = np.unique(labels)
    return np.mean([right[:, labels == c].mean(axis=1) for c in classes], axis=0)


def kept_test_sets(evaluation: ClientEvaluation, test: str) -> ClientEvaluation:
    """``evaluation`` with the test metrics of ``--evaluation.test``: the client split's
    (``acc``, ``bacc``, ``f1``), the global test set's (``global_*``), or both."""
    keep = {"client": lambda name: not name.startswith("global_"), "global": lambda name: name.startswith("global_"),
            "both": lambda name: True}[test]
    return replace(evaluation, test={name: values for name, values in evaluation.test.items() if keep(name)})


def select_lambdas(evaluations: Sequence[ClientEvaluation], rule: SelectionRule, guard: float = 0.0,
                   metric: LambdaMetric = "accuracy") -> list[int]:
    """Index of the chosen λ for each client, from validation scores only (``metric``:
    accuracy or balanced accuracy); with the ``per-client`` rule and ``guard`` = m > 0,
    λ = 1 stays unless the best λ beats it by more than m paired standard errors
    (module docstring; no validation records: λ = 1).  ``guard`` = 0 is the plain
    arg-max (ties to the first λ of the grid)."""
    if metric not in typing.get_args(LambdaMetric):
        raise ValueError(f"unknown λ metric {metric!r}; valid: " + ", ".join(typing.get_args(LambdaMetric)))
    if rule == "global":
        val = np.stack([np.nan_to_num(e.val_scores(metric), nan=0.0) for e in evaluations])
        best = int(np.argmax(val.mean(axis=0)))
        return [best] * len(evaluations)
    if rule == "per-client":
        return [guarded_choice(e, guard, metric) for e in evaluations]
    raise ValueError(f"unknown selection rule {rule!r}; valid: 'global', 'per-client'")


def guarded_choice(evaluation: ClientEvaluation, guard: float, metric: LambdaMetric = "accuracy") -> int:
    """One client's λ index under the per-client rule with guard ``guard`` (:func:`select_lambdas`)."""
    best = int(np.argmax(np.nan_to_num(evaluation.val_scores(metric), nan=0.0)))
    if guard <= 0 or 1.0 not in evaluation.lambdas:
        return best
    alone = evaluation.lambdas.index(1.0)
    if best == alone:
        return best
    if evaluation.val_right is None:
        raise ValueError(f"client {evaluation.client_id}: the λ guard needs each λ's validation hits (val_right)")
    right = evaluation.val_right
    if metric == "accuracy":
        groups = np.zeros(right.shape[1])
    elif evaluation.val_labels is None:
        raise ValueError(f"client {evaluation.client_id}: the balanced λ guard needs the validation labels (val_labels)")
    else:
        groups = evaluation.val_labels
    gain, standard_error = paired_gain_of_hits(groups, right[best], right[alone])
    return best if gain > guard * standard_error else alone


def chosen_results(evaluations: Sequence[ClientEvaluation], rule: SelectionRule, guard: float = 0.0,
                   metric: LambdaMetric = "accuracy") -> list[dict]:
    """Per-client rows: chosen λ (:func:`select_lambdas`), its validation accuracy (and
    balanced accuracy, when the evaluation has the validation labels) and the test
    metrics there."""
    rows = []
    for evaluation, index in zip(evaluations, select_lambdas(evaluations, rule, guard, metric)):
        row = {"client": evaluation.client_id, "lambda": evaluation.lambdas[index],
               "val_acc": float(evaluation.val_acc[index])}
        if evaluation.val_labels is not None and evaluation.val_right is not None:
            row["val_bacc"] = float(evaluation.val_scores("balanced")[index])
        row.update({name: float(values[index]) for name, values in evaluation.test.items()})
        rows.append(row)
    return rows


def summarize(rows: Sequence[dict]) -> dict[str, float]:
    """Mean and standard deviation across clients of acc, bacc and f1 (and of their
    ``global_`` versions when the rows have them)."""
    summary = {}
    for name in ("acc", "bacc", "f1", "global_acc", "global_bacc", "global_f1"):
        if not rows or name not in rows[0]:
            continue
        values = np.asarray([r[name] for r in rows], dtype=float)
        summary[f"{name}_mean"] = float(np.nanmean(values))
        summary[f"{name}_std"] = float(np.nanstd(values))
    return summary
