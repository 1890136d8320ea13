"""How well a λ rule chooses, judged on validation data alone (split-half cross-validation).

A λ rule (``--evaluation.selection``, ``--evaluation.lambda-metric``,
``--evaluation.lambda-guard``; :func:`fedsim.evaluation.blend.select_lambdas`) reads each
client's validation split; its score at the chosen λ on the same records is biased
upward (the plain arg-max most of all), so that score cannot say which rule to use.
:func:`split_half_score` estimates a rule's value without the test split: each client's
validation records are split in two halves, stratified by class; the rule chooses λ on one
half and the chosen λ is scored (balanced accuracy over the classes present) on the other,
both ways round, over ``repeats`` random splits:

    V(rule) = mean over repeats, halves h and clients i of BACC_i(B_h, λ̂(A_h)),

with ``A_h``/``B_h`` the choosing and the scored half (a client whose scored half is empty
is left out of that mean).  Every quantity comes from each λ's validation hits
(``ClientEvaluation.val_right``) and labels (``val_labels``), which the rule reads anyway;
the probes themselves were fitted before (their C chosen on the whole validation split
with ``--evaluation.probe.folds 0``), so V is optimistic for every rule alike.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from fedsim.evaluation.blend import ClientEvaluation, LambdaMetric, SelectionRule, balanced_hit_rates, select_lambdas


def restricted(evaluation: ClientEvaluation, keep: np.ndarray) -> ClientEvaluation:
    """``evaluation`` as if its validation split held only the records ``keep`` (bool mask)."""
    if evaluation.val_right is None or evaluation.val_labels is None:
        raise ValueError(f"client {evaluation.client_id}: split-half scores need val_right and val_labels")
    right = evaluation.val_right[:, keep]
    val_acc = right.mean(axis=1) if right.shape[1] else np.full(len(right), np.nan)
    return replace(evaluation, val_acc=val_acc, val_right=right, val_labels=evaluation.val_labels[keep])


def stratified_halves(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bool mask of half A: each class's records in random order, dealt alternately to A and B
    (the first of each class to A or B at random, so odd counts do not all favour A)."""
    labels = np.asarray(labels)
    in_a = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        in_a[members[int(rng.integers(2))::2]] = True
    return in_a


def split_half_score(evaluations: Sequence[ClientEvaluation], rule: SelectionRule, guard: float,
                     metric: LambdaMetric, rng: np.random.Generator, repeats: int = 10) -> float:
    """``V(rule)`` of the module docstring (a fraction; NaN when no client has validation records)."""
    means = []
    for _ in range(repeats):
        halves = [stratified_halves(e.val_labels if e.val_labels is not None else np.zeros(0), rng)
                  for e in evaluations]
        for choose_a in (True, False):
            chooser = [restricted(e, half if choose_a else ~half) for e, half in zip(evaluations, halves)]
            chosen = select_lambdas(chooser, rule, guard, metric)
            scores = []
            for evaluation, half, index in zip(evaluations, halves, chosen):
                scored = ~half if choose_a else half
                if scored.any():
                    assert evaluation.val_right is not None and evaluation.val_labels is not None
                    scores.append(float(balanced_hit_rates(evaluation.val_labels[scored],
                                                           evaluation.val_right[index:index + 1, scored])[0]))
            if scores:
                means.append(float(np.mean(scores)))
    return float(np.mean(means)) if means else float("nan")
