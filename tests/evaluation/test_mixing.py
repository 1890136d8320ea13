"""Data-level mixing (``--evaluation.mix data``): one probe on real ∪ synthetic records,
λ chosen on validation only, λ = 1 exactly the local probe."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fedsim.evaluation.blend import chosen_results
from fedsim.evaluation.bounds import local_only, pooled_real
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_with_synthetic
from fedsim.evaluation.global_test import global_test_set
from fedsim.evaluation.probe import fit_logistic, mixture_weights
from test_bounds import bacc, sharing_federation
from test_probe import overlapping_blobs, poison_test, skewed_federation

DATA = EvaluationConfig(mix="data")
OPTIONS = [DATA, EvaluationConfig(mix="data", synthetic_size="3x", synthetic_labels="balanced"),
           EvaluationConfig(synthetic_size="200", synthetic_labels="global")]
IDS = ["data", "data-balanced-3x", "prediction-global-200"]


def test_mixture_weights_give_each_group_its_share_and_balance_classes_within_it():
    y = np.array([0, 0, 0, 1, 2, 2, 0, 1])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    weights = mixture_weights(y, groups, (0.25, 0.75), "balanced")
    assert weights.mean() == pytest.approx(1.0)
    assert weights[groups == 0].sum() / len(y) == pytest.approx(0.25)
    assert weights[groups == 1].sum() / len(y) == pytest.approx(0.75)
    # within the real group: class 0 (3 records) and class 1 (1 record) carry equal weight
    assert weights[:3].sum() == pytest.approx(weights[3])
    assert weights[4:6].sum() == pytest.approx(weights[6]) == pytest.approx(weights[7])


def test_weighted_fit_matches_sklearn_with_sample_weights():
    """f = (1/n) Σ w_i CE_i + ‖W‖²/(2Cn) is scikit-learn's C Σ w_i CE_i + ½‖W‖² over C n."""
    x, y = overlapping_blobs()
    groups = (np.arange(len(y)) % 3 == 0).astype(int)
    weights = mixture_weights(y, groups, (0.3, 0.7), "balanced")
    probe = fit_logistic(x, y, 4, 0.1, max_iter=1000, tolerance=1e-8, weights=weights)
    reference = LogisticRegression(C=0.1, tol=1e-10, max_iter=10_000).fit(x.astype(np.float64), y,
                                                                         sample_weight=weights)
    np.testing.assert_allclose(probe.probabilities(x), reference.predict_proba(x.astype(np.float64)), atol=1e-5)


def test_lambda_one_is_the_local_probe_exactly():
    federation = skewed_federation()
    alone = local_only(federation, DATA, 0, global_test_set(federation))
    for data, local in zip(federation.clients, alone):
        synthetic_x, synthetic_y = data.x_train[::-1].copy() + 0.5, data.y_train[::-1].copy()
        mixed = evaluate_with_synthetic(data, synthetic_x, synthetic_y, DATA.probe, 0, global_test_set(federation),
                                        "data", (0.0, 0.5, 1.0))
        assert mixed.lambdas == (0.0, 0.5, 1.0)
        assert mixed.val_acc[-1] == local.val_acc[0]
        assert set(mixed.test) == set(local.test)
        for metric in local.test:
            assert mixed.test[metric][-1] == local.test[metric][0]
        only = evaluate_with_synthetic(data, synthetic_x, synthetic_y, DATA.probe, 0, None, "data", (1.0,))
        assert chosen_results([only], "per-client")[0]["bacc"] == chosen_results([local], "per-client")[0]["bacc"]


def test_pooled_real_with_data_mixing_beats_local_only_where_sharing_must_help():
    """(Tuned probe: the 100-step reference probe is far from converged on the weighted union.)"""
    federation = sharing_federation()
    for evaluation in OPTIONS[:2]:
        alone = bacc(local_only(federation, evaluation, 0))
        pooled = bacc(pooled_real(federation, evaluation, 0))
        assert pooled >= alone + 0.05


@pytest.mark.parametrize("evaluation", OPTIONS, ids=IDS)
def test_new_options_choose_on_validation_only(evaluation):
    federation = skewed_federation()
    clean = pooled_real(federation, evaluation, 0, global_test_set(federation))
    poisoned = poison_test(federation)
    dirty = pooled_real(poisoned, evaluation, 0, global_test_set(poisoned))
    assert [e.probes for e in clean] == [e.probes for e in dirty]
    for a, b in zip(clean, dirty):
        np.testing.assert_array_equal(a.val_acc, b.val_acc)
    for rule in ("per-client", "global"):
        for guard, metric in ((0.0, "accuracy"), (1.0, "accuracy"), (0.0, "balanced"), (1.0, "balanced")):
            assert [r["lambda"] for r in chosen_results(clean, rule, guard, metric)] == \
                [r["lambda"] for r in chosen_results(dirty, rule, guard, metric)]
        np.testing.assert_array_equal(a.val_scores("balanced"), b.val_scores("balanced"))
    assert not all(np.array_equal(a.test["acc"], b.test["acc"]) for a, b in zip(clean, dirty))
    assert not all(np.array_equal(a.test["global_acc"], b.test["global_acc"]) for a, b in zip(clean, dirty))
