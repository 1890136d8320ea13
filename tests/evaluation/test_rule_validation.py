"""Split-half validation of λ rules (fedsim/evaluation/rule_validation.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedsim.evaluation.blend import ClientEvaluation
from fedsim.evaluation.rule_validation import restricted, split_half_score, stratified_halves

LAMBDAS = (0.0, 0.5, 1.0)


def evaluation(client_id: int, labels: np.ndarray, right: np.ndarray) -> ClientEvaluation:
    """A client with each λ's validation hits ``right`` (L × n) and a test metric that the
    score must never read."""
    return ClientEvaluation(client_id, LAMBDAS, right.mean(axis=1), {"bacc": np.array([0.1, 0.2, 0.3])}, {},
                            right, labels)


def random_client(rng: np.random.Generator, client_id: int) -> ClientEvaluation:
    n = int(rng.integers(6, 40))
    labels = rng.integers(0, 3, size=n)
    right = rng.random((len(LAMBDAS), n)) < rng.uniform(0.3, 0.9, size=(len(LAMBDAS), 1))
    return evaluation(client_id, labels, right)


def by_hand(evaluations, halves, metric: str) -> float:
    """Independent computation for the unguarded per-client rule: per record loops."""
    means = []
    for a_halves in halves:
        for choose_a in (True, False):
            scores = []
            for e, in_a in zip(evaluations, a_halves):
                choose = [i for i in range(len(e.val_labels)) if in_a[i] == choose_a]
                scored = [i for i in range(len(e.val_labels)) if in_a[i] != choose_a]

                def score(lam_index, records):
                    if metric == "accuracy":
                        return sum(e.val_right[lam_index][i] for i in records) / len(records) if records else 0.0
                    per_class = {}
                    for i in records:
                        per_class.setdefault(e.val_labels[i], []).append(e.val_right[lam_index][i])
                    return sum(sum(v) / len(v) for v in per_class.values()) / len(per_class) if per_class else 0.0
                values = [score(j, choose) for j in range(len(LAMBDAS))]
                best = values.index(max(values))
                if scored:
                    per_class = {}
                    for i in scored:
                        per_class.setdefault(e.val_labels[i], []).append(e.val_right[best][i])
                    scores.append(sum(sum(v) / len(v) for v in per_class.values()) / len(per_class))
            means.append(sum(scores) / len(scores))
    return sum(means) / len(means)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("metric", ["accuracy", "balanced"])
def test_split_half_score_agrees_with_a_per_record_loop(seed, metric):
    rng = np.random.default_rng(seed)
    evaluations = [random_client(rng, i) for i in range(3)]
    repeats = 3
    halves_rng = np.random.default_rng(seed + 100)
    halves = [[stratified_halves(e.val_labels, halves_rng) for e in evaluations] for _ in range(repeats)]
    expected = by_hand(evaluations, halves, metric)
    got = split_half_score(evaluations, "per-client", 0.0, metric, np.random.default_rng(seed + 100), repeats)
    assert got == pytest.approx(expected, abs=1e-12)


def test_halves_split_every_class_evenly():
    labels = np.array([0] * 7 + [1] * 4 + [2] * 1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        in_a = stratified_halves(labels, rng)
        for label, count in ((0, 7), (1, 4), (2, 1)):
            assert abs(2 * int(in_a[labels == label].sum()) - count) <= 1


def test_a_dominant_lambda_scores_its_own_accuracy_and_the_test_split_is_never_read():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    right = np.array([[False] * 8, [True] * 8, [True] * 4 + [False] * 4])  # λ = 0.5 right everywhere
    clean = evaluation(0, labels, right)
    poisoned = replace(clean, test={"bacc": np.array([0.9, 0.0, 0.9])})
    for rule, guard in (("per-client", 0.0), ("per-client", 1.0), ("global", 0.0)):
        for metric in ("accuracy", "balanced"):
            score = split_half_score([clean], rule, guard, metric, np.random.default_rng(1), 4)
            assert score == split_half_score([poisoned], rule, guard, metric, np.random.default_rng(1), 4)
    assert split_half_score([clean], "per-client", 0.0, "balanced", np.random.default_rng(1), 4) == 1.0


def test_restricted_recomputes_the_validation_accuracy():
    labels = np.array([0, 1, 1, 0])
    right = np.array([[True, False, True, True], [False, False, True, False], [True, True, True, True]])
    kept = restricted(evaluation(0, labels, right), np.array([True, False, True, False]))
    np.testing.assert_array_equal(kept.val_acc, [1.0, 0.5, 1.0])
    np.testing.assert_array_equal(kept.val_labels, [0, 1])
    with pytest.raises(ValueError, match="val_right and val_labels"):
        restricted(replace(kept, val_labels=None), np.array([True, True]))
