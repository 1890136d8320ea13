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
