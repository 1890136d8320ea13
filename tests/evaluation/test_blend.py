"""The blend's λ choice (fedsim/evaluation/blend.py): the per-client rule's guard toward λ = 1."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsim.evaluation.blend import DEFAULT_LAMBDAS, blend_evaluation, chosen_results, select_lambdas


def one_hot(labels: np.ndarray, classes: int = 3) -> np.ndarray:
    return np.eye(classes)[labels]


def client(y_val: np.ndarray, local_val: np.ndarray, global_val: np.ndarray, client_id: int = 0):
    """A client whose test split is its validation split (the choice never reads it)."""
    return blend_evaluation(client_id, y_val, y_val, one_hot(local_val), one_hot(global_val),
                            one_hot(local_val), one_hot(global_val))


def guard_by_hand(y: np.ndarray, best_right: np.ndarray, alone_right: np.ndarray, m: float) -> bool:
    """Independent computation of the guard's test: the accuracy gain of the best λ over
    λ = 1 exceeds m paired standard errors (half a pseudo-record of each discordant kind)."""
    n = len(y)
    wins = int(np.sum(best_right & ~alone_right))
    losses = int(np.sum(~best_right & alone_right))
    w, l = (wins + 0.5) / (n + 1), (losses + 0.5) / (n + 1)
    standard_error = math.sqrt((w + l - (w - l) ** 2) / (n + 1))
    return (wins - losses) / n > m * standard_error


def test_a_lucky_record_does_not_move_lambda_away_from_the_local_probe():
    y = np.zeros(30, dtype=int)
    local = y.copy()
    local[:3] = 1                        # the local probe misses 3 of 30
    synthetic = y.copy()
    synthetic[:2] = 1                    # the synthetic probe misses 2 of them: one record better
    evaluation = client(y, local, synthetic)
    assert select_lambdas([evaluation], "per-client", 0.0) == [0]               # plain arg-max: λ = 0
    alone = DEFAULT_LAMBDAS.index(1.0)
    assert not guard_by_hand(y, synthetic == y, local == y, 1.0)
    assert select_lambdas([evaluation], "per-client", 1.0) == [alone]
    assert chosen_results([evaluation], "per-client", 1.0)[0]["lambda"] == 1.0


def test_clear_evidence_keeps_the_validation_best_lambda():
    y = np.zeros(40, dtype=int)
    local = y.copy()
    local[:12] = 1                       # the local probe misses 12 of 40; the synthetic one none
    evaluation = client(y, local, y.copy())
    assert guard_by_hand(y, np.ones(40, bool), local == y, 1.0)
    chosen = select_lambdas([evaluation], "per-client", 1.0)[0]
    assert evaluation.lambdas[chosen] < 1.0 and chosen == select_lambdas([evaluation], "per-client", 0.0)[0]


@pytest.mark.parametrize("seed", range(20))
def test_the_guard_agrees_with_an_independent_computation(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=int(rng.integers(5, 60)))
    local = np.where(rng.random(len(y)) < 0.7, y, rng.integers(0, 3, size=len(y)))
    synthetic = np.where(rng.random(len(y)) < rng.uniform(0.5, 0.95), y, rng.integers(0, 3, size=len(y)))
    evaluation = client(y, local, synthetic)
    best = int(np.argmax(evaluation.val_acc))
    alone = evaluation.lambdas.index(1.0)
    best_right = np.argmax(0.0 + evaluation.lambdas[best] * one_hot(local) + (1 - evaluation.lambdas[best])
                           * one_hot(synthetic), axis=1) == y
    expected = best if best == alone or guard_by_hand(y, best_right, local == y, 1.0) else alone
    assert select_lambdas([evaluation], "per-client", 1.0) == [expected]


def test_no_validation_records_keep_the_local_probe_and_the_global_rule_is_unguarded():
    empty = blend_evaluation(0, np.zeros(0, int), np.zeros(4, int), np.zeros((0, 3)), np.zeros((0, 3)),
                             one_hot(np.zeros(4, int)), one_hot(np.ones(4, int)))
    assert select_lambdas([empty], "per-client", 1.0) == [DEFAULT_LAMBDAS.index(1.0)]
    y = np.zeros(30, dtype=int)
    local = y.copy()
    local[:3] = 1
    synthetic = y.copy()
    synthetic[:2] = 1
    evaluations = [client(y, local, synthetic, 0), client(y, local, synthetic, 1)]
    assert select_lambdas(evaluations, "global", 1.0) == select_lambdas(evaluations, "global", 0.0) == [0, 0]


def balanced_guard_by_hand(y: np.ndarray, best_right: np.ndarray, alone_right: np.ndarray, m: float) -> bool:
    """Independent computation of the balanced guard: the balanced-accuracy gain (mean over
    the classes of y of the per-class accuracy difference) exceeds m paired standard errors
    (per class: half a pseudo-record of each discordant kind; the class variances summed,
    divided by the squared class count)."""
    classes = sorted(set(y.tolist()))
    gain, variance = 0.0, 0.0
    for c in classes:
        members = y == c
        n = int(members.sum())
        wins = int(np.sum(best_right[members] & ~alone_right[members]))
        losses = int(np.sum(~best_right[members] & alone_right[members]))
        w, l = (wins + 0.5) / (n + 1), (losses + 0.5) / (n + 1)
        gain += (wins - losses) / n / len(classes)
        variance += (w + l - (w - l) ** 2) / (n + 1)
    return gain > m * math.sqrt(variance) / len(classes)


def majority_gain_minority_loss():
    """A skewed client: the synthetic probe gets the 36 majority records right and the 4
    minority ones wrong, the local probe the reverse of 8 majority records: accuracy
    prefers the synthetic probe (0.9 vs 0.8), balanced accuracy the local one (0.5 vs 0.89)."""
    y = np.array([0] * 36 + [1] * 4)
    local = y.copy()
    local[:8] = 1
    synthetic = np.zeros(40, dtype=int)
    return y, local, synthetic


def test_balanced_scores_equal_balanced_accuracy_of_each_blend():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=50)
    local = np.where(rng.random(50) < 0.7, y, rng.integers(0, 3, size=50))
    synthetic = np.where(rng.random(50) < 0.6, y, rng.integers(0, 3, size=50))
    evaluation = client(y, local, synthetic)
    expected = [balanced_accuracy_score(y, np.argmax(lam * one_hot(local) + (1 - lam) * one_hot(synthetic), axis=1))
                for lam in evaluation.lambdas]
    np.testing.assert_allclose(evaluation.val_scores("balanced"), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(evaluation.val_scores("accuracy"), evaluation.val_acc)


def test_balanced_metric_keeps_the_local_probe_where_accuracy_trades_away_a_minority_class():
    y, local, synthetic = majority_gain_minority_loss()
    evaluation = client(y, local, synthetic)
    alone = DEFAULT_LAMBDAS.index(1.0)
    assert guard_by_hand(y, synthetic == y, local == y, 1.0)        # accuracy: the guard lets it through
    assert evaluation.lambdas[select_lambdas([evaluation], "per-client", 1.0, "accuracy")[0]] < 0.5
    assert select_lambdas([evaluation], "per-client", 1.0, "balanced") == [alone]
    assert select_lambdas([evaluation], "per-client", 0.0, "balanced") != [0]  # never the synthetic probe
    row = chosen_results([evaluation], "per-client", 1.0, "balanced")[0]
    assert row["lambda"] == 1.0 and row["val_bacc"] == pytest.approx((28 / 36 + 1) / 2)
    assert select_lambdas([evaluation, evaluation], "global", 0.0, "balanced")[0] >= DEFAULT_LAMBDAS.index(0.6)


@pytest.mark.parametrize("seed", range(20))
def test_the_balanced_guard_agrees_with_an_independent_computation(seed):
    rng = np.random.default_rng(100 + seed)
    y = rng.integers(0, 3, size=int(rng.integers(5, 60)))
    local = np.where(rng.random(len(y)) < 0.7, y, rng.integers(0, 3, size=len(y)))
    synthetic = np.where(rng.random(len(y)) < rng.uniform(0.5, 0.95), y, rng.integers(0, 3, size=len(y)))
    evaluation = client(y, local, synthetic)
    rights = [np.argmax(lam * one_hot(local) + (1 - lam) * one_hot(synthetic), axis=1) == y
              for lam in evaluation.lambdas]
    scores = [np.mean([r[y == c].mean() for c in np.unique(y)]) for r in rights]
    best = int(np.argmax(scores))
    alone = evaluation.lambdas.index(1.0)
    expected = best if best == alone or balanced_guard_by_hand(y, rights[best], rights[alone], 1.0) else alone
    assert select_lambdas([evaluation], "per-client", 1.0, "balanced") == [expected]


def test_an_unknown_metric_is_refused():
    y, local, synthetic = majority_gain_minority_loss()
    with pytest.raises(ValueError, match="valid: accuracy, balanced"):
        select_lambdas([client(y, local, synthetic)], "per-client", 1.0, "f1")  # type: ignore[arg-type]
