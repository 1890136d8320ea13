"""The global test set: class-balanced, drawn only from the clients' test splits, fixed by the data seed."""

from __future__ import annotations

import dataclasses

import numpy as np

from fedsim.data.federation import DataConfig, load_federation
from fedsim.evaluation.global_test import global_test_set


def skewed_federation():
    return load_federation(DataConfig(dataset="digits", partition="dirichlet", alpha=0.3, num_clients=5,
                                      partition_seed=0), 0)


def test_class_balanced_limited_by_the_rarest_class():
    federation = skewed_federation()
    pooled = np.concatenate([c.y_test for c in federation.clients])
    classes, counts = np.unique(pooled, return_counts=True)
    test_set = global_test_set(federation)
    found, per_class = np.unique(test_set.y, return_counts=True)
    np.testing.assert_array_equal(found, classes)
    assert set(per_class.tolist()) == {int(counts.min())}


def test_built_only_from_test_splits_without_repeats():
    federation = skewed_federation()
    test_set = global_test_set(federation)
    pooled = {(row.tobytes(), int(label)) for c in federation.clients for row, label in zip(c.x_test, c.y_test)}
    drawn = [(row.tobytes(), int(label)) for row, label in zip(test_set.x, test_set.y)]
    assert all(record in pooled for record in drawn)
    assert len(set(drawn)) == len(drawn)
    # train and validation splits do not enter: replacing them leaves the set unchanged
    noise = np.random.default_rng(3)
    other = dataclasses.replace(federation, clients=tuple(
        dataclasses.replace(c, x_train=noise.standard_normal(c.x_train.shape).astype(c.x_train.dtype),
                            x_val=noise.standard_normal(c.x_val.shape).astype(c.x_val.dtype))
        for c in federation.clients))
    np.testing.assert_array_equal(global_test_set(other).x, test_set.x)


def test_fixed_by_the_data_seed():
    federation = skewed_federation()
    np.testing.assert_array_equal(global_test_set(federation).x, global_test_set(skewed_federation()).x)


def test_blend_scores_the_global_test_set_and_the_option_keeps_the_asked_columns():
    from fedsim.evaluation.blend import blend_evaluation, chosen_results, kept_test_sets
    from fedsim.evaluation.metrics import classification_metrics

    rng = np.random.default_rng(0)
    y_val, y_test, y_global = rng.integers(0, 3, 20), rng.integers(0, 3, 20), np.repeat(np.arange(3), 5)
    proba = [rng.dirichlet(np.ones(3), size=n) for n in (20, 20, 20, 20, 15, 15)]
    evaluation = blend_evaluation(0, y_val, y_test, *proba[:4], (0.0, 0.5, 1.0), None,
                                  (y_global, proba[4], proba[5]))
    for index, lam in enumerate((0.0, 0.5, 1.0)):  # the same blend p_λ, on the global test set
        expected = classification_metrics(y_global, lam * proba[4] + (1 - lam) * proba[5])
        assert evaluation.test["global_bacc"][index] == expected["bacc"]
    assert set(kept_test_sets(evaluation, "client").test) == {"acc", "bacc", "f1"}
    assert set(kept_test_sets(evaluation, "global").test) == {"global_acc", "global_bacc", "global_f1"}
    row, = chosen_results([kept_test_sets(evaluation, "both")], "global")
    assert {"acc", "bacc", "global_acc", "global_bacc", "lambda", "val_acc"} <= set(row)


def test_evaluation_test_option_is_validated():
    import pytest

    from fedsim.errors import UserError
    from fedsim.evaluation.downstream import EvaluationConfig

    with pytest.raises(UserError, match="--evaluation.test"):
        EvaluationConfig(test="pooled").validate()
