"""Bounds of the downstream table: reference rows that are not methods.

* ``local-only``   each client's probe on its own train split alone (no sharing): the
                   blend at λ = 1 only, nothing blended or selected but the probe.
* ``pooled-real``  each client's synthetic set replaced by *real* records drawn from
                   all clients' train splits, with the labels and size a generator's set
                   would have (``--evaluation.synthetic-labels``/``-size``; ``global``
                   labels from the pooled train labels), then the generators' protocol
                   (:func:`evaluate_with_synthetic`, ``--evaluation.mix``, λ chosen on
                   validation): the non-private ceiling of any generator.
* ``centralised``  one probe on the union of all train splits (its probe chosen on the
                   union of validation splits), scored on each client's test split:
                   the blend at λ = 0 only.

Each returns one :class:`~fedsim.evaluation.blend.ClientEvaluation` per client, like the
methods, so tables and sweeps can show them as rows (marked as bounds).  Like the
methods, nothing here reads a test split except to score it, and the global test set
(``global_test``, :mod:`fedsim.evaluation.global_test`) is only scored too.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fedsim.data.federation import Federation
from fedsim.evaluation.blend import ClientEvaluation, blend_evaluation, chosen_results, kept_test_sets
from fedsim.evaluation.downstream import (EvaluationConfig, evaluate_with_synthetic, local_probe, scored_global_test,
                                         synthetic_labels_for)
from fedsim.evaluation.global_test import GlobalTestSet, global_test_set
from fedsim.evaluation.probe import fit_probe
from fedsim.seeding import numpy_rng

Bound = Callable[[Federation, EvaluationConfig, int, GlobalTestSet | None], list[ClientEvaluation]]


def local_only(federation: Federation, evaluation: EvaluationConfig, seed: int,
               global_test: GlobalTestSet | None = None) -> list[ClientEvaluation]:
    """Each client's probe on its own train split (chosen on its validation split), alone."""
    rows = []
    for data in federation.clients:
        probe = local_probe(data, evaluation.probe, seed)
        val, test = probe.probabilities(data.x_val), probe.probabilities(data.x_test)
        rows.append(blend_evaluation(data.client_id, data.y_val, data.y_test, val, val, test, test, (1.0,),
                                     {"local": probe.name},
                                     scored_global_test(global_test, probe.probabilities, probe.probabilities)))
    return rows


def pooled_real_draw(federation: Federation, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Real train records, drawn from the union of all clients' train splits, one per
    entry of ``labels`` with that label: without replacement while the pool of the
    class suffices, with replacement beyond (a class can be rarer in the pool than a
    client's count only if it is requested more often than it exists)."""
    x = np.concatenate([c.x_train for c in federation.clients])
    y = np.concatenate([c.y_train for c in federation.clients])
    out = np.empty((len(labels), x.shape[1]), dtype=x.dtype)
    for label in np.unique(labels):
        wanted = np.flatnonzero(labels == label)
        pool = np.flatnonzero(y == label)
        chosen = rng.choice(pool, size=len(wanted), replace=len(wanted) > len(pool))
        out[wanted] = x[chosen]
    return out


def pooled_real(federation: Federation, evaluation: EvaluationConfig, seed: int,
                global_test: GlobalTestSet | None = None) -> list[ClientEvaluation]:
    """The generators' protocol with each client's synthetic set made of real pooled train
    records (stream ``(seed, "pooled-real", client)``) with the labels of
    :func:`~fedsim.evaluation.downstream.synthetic_labels_for` (its own train label counts
    by default; ``global``: drawn from the pooled train labels; a class absent from the pool
    is dropped), drawn with replacement beyond a class's pool (:func:`pooled_real_draw`)."""
    pooled = np.concatenate([c.y_train for c in federation.clients]).astype(np.int64)
    rows = []
    for data in federation.clients:
        rng = numpy_rng(seed, "pooled-real", data.client_id)
        labels = synthetic_labels_for(data, lambda size: np.sort(rng.choice(pooled, size=size)), evaluation)
        labels = labels[np.isin(labels, pooled)]
        records = pooled_real_draw(federation, labels, rng)
        rows.append(evaluate_with_synthetic(data, records, labels, evaluation.probe, seed, global_test,
                                            evaluation.mix, evaluation.mix_lambdas))
    return rows


def centralised(federation: Federation, evaluation: EvaluationConfig, seed: int,
                global_test: GlobalTestSet | None = None) -> list[ClientEvaluation]:
    """One probe on the union of train splits (chosen on the union of validation splits),
    scored on each client's validation and test split."""
    clients = federation.clients
    probe = fit_probe(np.concatenate([c.x_train for c in clients]), np.concatenate([c.y_train for c in clients]),
                      federation.num_classes, np.concatenate([c.x_val for c in clients]),
                      np.concatenate([c.y_val for c in clients]), evaluation.probe, seed, "centralised")
    rows = []
    for data in clients:
        val, test = probe.probabilities(data.x_val), probe.probabilities(data.x_test)
        rows.append(blend_evaluation(data.client_id, data.y_val, data.y_test, val, val, test, test, (0.0,),
                                     {"global": probe.name},
                                     scored_global_test(global_test, probe.probabilities, probe.probabilities)))
    return rows


BOUNDS: dict[str, Bound] = {"local-only": local_only, "pooled-real": pooled_real, "centralised": centralised}
"""Bound name → function ``(federation, evaluation, seed, global_test=None) -> [ClientEvaluation per client]``."""


def bound_results(name: str, federation: Federation, evaluation: EvaluationConfig, seed: int) -> list[dict]:
    """Per-client rows of bound ``name`` at the λ chosen on validation (``evaluation.selection``),
    scored on the test sets of ``evaluation.test`` (the global test set built from
    ``federation`` as for the methods): what the table and the sweeps report."""
    global_test = None if evaluation.test == "client" else global_test_set(federation)
    evaluations = BOUNDS[name](federation, evaluation, seed, global_test)
    return chosen_results([kept_test_sets(e, evaluation.test) for e in evaluations], evaluation.selection,
                          evaluation.lambda_guard, evaluation.lambda_metric)
