"""The probe presets: ``tuned`` converges to scikit-learn's logistic regression, chooses
on validation data and out-of-fold predictions of its train set only (one standard
error, then a paired test against the reference probe), and ``reference`` reproduces
the reference probe's numbers exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from fedsim.data.dataset import EmbeddingDataset
from fedsim.data.federation import DataConfig, build_federation
from fedsim.errors import UserError
from fedsim.evaluation.blend import DEFAULT_LAMBDAS, blend_evaluation
from fedsim.evaluation.classifier import LinearProbeConfig, predict_proba, train_linear, train_linear_folds
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_with_synthetic
from fedsim.evaluation import probe
from fedsim.evaluation.probe import (candidate_name, fit_logistic, fit_probe, one_standard_error_choice, out_of_fold,
                                     paired_gain, stratified_folds, validation_score)
from fedsim.seeding import numpy_rng


def overlapping_blobs(n: int = 300, dim: int = 8, classes: int = 4, seed: int = 0):
    """Gaussian classes that overlap (a finite, unique optimum at every C), unbalanced."""
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, size=n, p=np.linspace(1, 3, classes) / np.linspace(1, 3, classes).sum())
    x = rng.standard_normal((n, dim)) + 1.2 * np.eye(classes, dim)[y]
    return x.astype(np.float32), y.astype(np.int64)


def skewed_federation(seed: int = 0):
    x, y = overlapping_blobs(1200, seed=seed)
    return build_federation(EmbeddingDataset(x=x, y=y, name="blobs"),
                            DataConfig(partition="dirichlet", alpha=0.5, num_clients=4, min_samples=40), seed)


@pytest.mark.parametrize("class_weight", ["balanced", "none"])
@pytest.mark.parametrize("inverse_l2", [0.01, 1.0])
def test_tuned_probe_converges_to_sklearns_logistic_regression(class_weight, inverse_l2):
    x, y = overlapping_blobs()
    probe = fit_logistic(x, y, 5, inverse_l2, class_weight, max_iter=1000, tolerance=1e-8)
    assert probe.gradient_max < 1e-6
    reference = LogisticRegression(C=inverse_l2, class_weight=None if class_weight == "none" else "balanced",
                                   tol=1e-10, max_iter=10_000).fit(x.astype(np.float64), y)
    expected = np.zeros((len(x), 5))
    expected[:, reference.classes_] = reference.predict_proba(x.astype(np.float64))
    np.testing.assert_allclose(probe.probabilities(x), expected, atol=1e-5)
    assert np.all(probe.probabilities(x)[:, 4] == 0)  # class 4 absent from training


def test_warm_start_reaches_the_same_optimum():
    x, y = overlapping_blobs()
    cold = fit_logistic(x, y, 4, 0.3, tolerance=1e-8)
    warm = fit_logistic(x, y, 4, 0.3, tolerance=1e-8, start=fit_logistic(x, y, 4, 0.03))
    np.testing.assert_allclose(warm.probabilities(x), cold.probabilities(x), atol=1e-6)


def test_logits_from_transposed_features_match_the_plain_product(monkeypatch):
    """The objective's logits ``(W xᵀ)ᵀ + b`` (issue #17) are ``x Wᵀ + b`` in the same C
    order, and the fitted probe equals the one fitted with the plain product: to the bit
    with this project's OpenBLAS, asserted to 1e-13 (another BLAS may order a dot product
    differently)."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((500, 384)), rng.standard_normal((11, 384)), rng.standard_normal(11)
    logits = probe._logits(w, np.ascontiguousarray(x.T), b)
    assert logits.flags.c_contiguous
    np.testing.assert_allclose(logits, x @ w.T + b, rtol=1e-13, atol=1e-13)
    features, labels = overlapping_blobs(n=400, dim=32, classes=5)
    fast = fit_logistic(features, labels, 5, 10.0)
    monkeypatch.setattr(probe, "_logits",  # the expression before: x (C order) @ Wᵀ + b
                        lambda weight, features_t, bias: np.ascontiguousarray(features_t.T) @ weight.T + bias)
    plain = fit_logistic(features, labels, 5, 10.0)
    assert fast.iterations == plain.iterations
    np.testing.assert_allclose(fast.weight, plain.weight, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fast.bias, plain.bias, rtol=1e-13, atol=1e-13)


def test_single_class_gets_probability_one():
    x, _ = overlapping_blobs(20)
    probe = fit_logistic(x, np.full(20, 2), 3, 1.0)
    np.testing.assert_array_equal(probe.probabilities(x), np.tile([0.0, 0.0, 1.0], (20, 1)))


def test_validation_score_is_balanced_accuracy_with_a_smoothed_standard_error():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    probabilities = rng.random((50, 4))
    score, standard_error = validation_score(y, probabilities)
    assert score == pytest.approx(balanced_accuracy_score(y, probabilities.argmax(1)))
    per_class = []
    for c in range(3):
        n_c, right = np.sum(y == c), np.sum((y == c) & (probabilities.argmax(1) == c))
        smoothed = (right + 1) / (n_c + 2)
        per_class.append(smoothed * (1 - smoothed) / n_c)
    assert standard_error == pytest.approx(np.sqrt(sum(per_class)) / 3)
    perfect = np.eye(4)[y]
    assert validation_score(y, perfect)[0] == 1.0 and validation_score(y, perfect)[1] > 0


def test_one_standard_error_rule_prefers_the_most_regularised_candidate_within_one_se():
    scores = np.array([0.70, 0.74, 0.80, 0.78])
    assert one_standard_error_choice(scores, np.full(4, 0.07)) == 1   # 0.74 ≥ 0.80 − 0.07, 0.70 is not
    assert one_standard_error_choice(scores, np.full(4, 0.2)) == 0
    assert one_standard_error_choice(scores, np.zeros(4)) == 2
    assert one_standard_error_choice(np.full(3, np.nan), np.full(3, np.nan)) == 0


def test_tuned_choice_follows_validation_data():
    """A validation split that rewards no regularisation against one that rewards the
    reference probe: the choice moves with the validation data (it is read)."""
    x, y = overlapping_blobs(400)
    config = LinearProbeConfig(inverse_l2=(0.001, 1.0))
    fitted = fit_probe(x[:300], y[:300], 4, x[300:], y[300:], config, 0, "local", 0)
    assert fitted.candidates == ("reference", "C=0.001", "C=1")
    assert fitted.val_bacc == tuple(validation_score(y[300:], fitted.models[name].probabilities(x[300:])
                                                     if name != "reference" else
                                                     predict_proba(fitted.models[name], x[300:]))[0]
                                    for name in fitted.candidates)
    # validation = train: the least-regularised probe fits it best, by more than one SE
    # (folds=0: the validation split is the only evidence)
    memorised = fit_probe(x[:60], y[:60], 4, x[:60], y[:60], LinearProbeConfig(inverse_l2=(1e-4, 1e3), folds=0,
                                                                                include_reference=False), 0)
    assert memorised.name == "C=1000" and memorised.evidence == 60


def test_stratified_folds_deal_each_class_round_robin():
    y = np.repeat([0, 1, 2, 5], [13, 2, 7, 1])
    assignment = stratified_folds(y, 5, np.random.default_rng(0))
    assert set(assignment) <= set(range(5))
    for c in np.unique(y):
        counts = np.bincount(assignment[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.sum() == np.sum(y == c)
    np.testing.assert_array_equal(assignment, stratified_folds(y, 5, np.random.default_rng(0)))


def test_batched_fold_references_follow_their_own_reference_training():
    x, y = overlapping_blobs(90)
    kept = stratified_folds(y, 3, np.random.default_rng(1))[None, :] != np.arange(3)[:, None]
    config = LinearProbeConfig()
    batched = train_linear_folds(x, y, 5, config, kept, 4, "global", 2)
    for fold, model in enumerate(batched):
        alone = train_linear(x[kept[fold]], y[kept[fold]], 5, config, 4, "global", 2, "fold", fold)
        np.testing.assert_allclose(predict_proba(model, x), predict_proba(alone, x), atol=1e-5)


def test_weighted_fold_probes_follow_their_own_weighted_train_linear():
    """The data-level mix's weights reach the folds: fold f's probe is train_linear on its
    kept records with their weights."""
    x, y = overlapping_blobs(90)
    kept = stratified_folds(y, 3, np.random.default_rng(1))[None, :] != np.arange(3)[:, None]
    weights = np.random.default_rng(2).uniform(0.2, 2.0, size=len(y))
    config = LinearProbeConfig()
    batched = train_linear_folds(x, y, 5, config, kept, 4, "global", 2, weights=weights)
    for fold, model in enumerate(batched):
        alone = train_linear(x[kept[fold]], y[kept[fold]], 5, config, 4, "global", 2, "fold", fold,
                             weights=weights[kept[fold]])
        np.testing.assert_allclose(predict_proba(model, x), predict_proba(alone, x), atol=1e-5)


def test_weighted_out_of_fold_fits_use_the_kept_records_weights():
    x, y = overlapping_blobs(120)
    weights = np.random.default_rng(3).uniform(0.2, 2.0, size=len(y))
    config = LinearProbeConfig(inverse_l2=(0.1,), folds=3, tolerance=1e-9, max_iter=2000, include_reference=False)
    full = {candidate_name(0.1): fit_logistic(x, y, 4, 0.1, tolerance=1e-9, max_iter=2000, weights=weights)}
    got = out_of_fold(x, y, 4, config, full, 6, "local", 3, weights=weights)
    assignment = stratified_folds(y, 3, numpy_rng(6, "probe-folds", "local", 3))
    for fold in range(3):
        held = assignment == fold
        cold = fit_logistic(x[~held], y[~held], 4, 0.1, tolerance=1e-9, max_iter=2000, weights=weights[~held])
        np.testing.assert_allclose(got[candidate_name(0.1)][held], cold.probabilities(x[held]), atol=1e-5)


def test_out_of_fold_predictions_come_from_fits_on_the_other_folds():
    x, y = overlapping_blobs(120)
    config = LinearProbeConfig(inverse_l2=(0.01, 1.0), folds=4, tolerance=1e-9, max_iter=2000)
    full = {candidate_name(c): fit_logistic(x, y, 4, c, tolerance=1e-9, max_iter=2000) for c in config.inverse_l2}
    got = out_of_fold(x, y, 4, config, full, 6, "local", 3)
    assignment = stratified_folds(y, 4, numpy_rng(6, "probe-folds", "local", 3))
    kept = assignment[None, :] != np.arange(4)[:, None]
    references = train_linear_folds(x, y, 4, config, kept, 6, "local", 3)
    for fold in range(4):
        held = assignment == fold
        for c in config.inverse_l2:  # cold start on the kept records: the same optimum
            cold = fit_logistic(x[~held], y[~held], 4, c, tolerance=1e-9, max_iter=2000)
            np.testing.assert_allclose(got[candidate_name(c)][held], cold.probabilities(x[held]), atol=1e-5)
        np.testing.assert_array_equal(got["reference"][held], predict_proba(references[fold], x[held]))


def test_only_the_folded_records_are_held_out_the_others_train_every_fold():
    x, y = overlapping_blobs(160)
    folded = np.arange(len(y)) % 3 != 0          # a third of the records (say, synthetic) never held out
    config = LinearProbeConfig(inverse_l2=(0.1,), folds=3, tolerance=1e-9, max_iter=2000, include_reference=False)
    full = {candidate_name(0.1): fit_logistic(x, y, 4, 0.1, tolerance=1e-9, max_iter=2000)}
    got = out_of_fold(x, y, 4, config, full, 6, "mix", 3, folded=folded)[candidate_name(0.1)]
    assert not got[~folded].any()                # no prediction for the records never held out
    assignment = stratified_folds(y[folded], 3, numpy_rng(6, "probe-folds", "mix", 3))
    for fold in range(3):
        held = np.zeros(len(y), dtype=bool)
        held[np.flatnonzero(folded)[assignment == fold]] = True
        cold = fit_logistic(x[~held], y[~held], 4, 0.1, tolerance=1e-9, max_iter=2000)  # unfolded records kept
        np.testing.assert_allclose(got[held], cold.probabilities(x[held]), atol=1e-5)


def test_fit_probe_scores_the_folded_records_only():
    x, y = overlapping_blobs(200)
    x_val, y_val = overlapping_blobs(40, seed=1)
    config = LinearProbeConfig(folds=3, include_reference=False)
    folded = np.arange(len(y)) < 120
    everything = fit_probe(x, y, 4, x_val, y_val, config, 5, "mix", 0)
    part = fit_probe(x, y, 4, x_val, y_val, config, 5, "mix", 0, folded=folded)
    assert everything.evidence == len(y_val) + len(y) and part.evidence == len(y_val) + 120
    np.testing.assert_array_equal(fit_probe(x, y, 4, x_val, y_val, config, 5, "mix", 0,
                                            folded=np.ones(len(y), bool)).scores, everything.scores)


def test_paired_gain_against_an_independent_computation():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 40)
    challenger, incumbent = rng.random((40, 3)), rng.random((40, 3))
    gain, standard_error = paired_gain(y, challenger, incumbent)
    assert gain == pytest.approx(balanced_accuracy_score(y, challenger.argmax(1))
                                 - balanced_accuracy_score(y, incumbent.argmax(1)))
    variance = 0.0
    for c in range(3):
        rows = [i for i in range(40) if y[i] == c]
        wins = sum(challenger[i].argmax() == c != incumbent[i].argmax() for i in rows)
        losses = sum(incumbent[i].argmax() == c != challenger[i].argmax() for i in rows)
        w, l_ = (wins + 0.5) / (len(rows) + 1), (losses + 0.5) / (len(rows) + 1)
        variance += (w + l_ - (w - l_) ** 2) / (len(rows) + 1)
    assert standard_error == pytest.approx(np.sqrt(variance) / 3)


def test_reference_probe_stays_unless_significantly_beaten():
    x, y = overlapping_blobs(400)
    config = LinearProbeConfig(inverse_l2=(0.01,), folds=0)
    full = fit_probe(x[:300], y[:300], 4, x[300:], y[300:], config, 0, "local", 0)
    reference, converged = (predict_proba(full.models["reference"], x[300:]),
                            full.models["C=0.01"].probabilities(x[300:]))
    right_r, right_c = reference.argmax(1) == y[300:], converged.argmax(1) == y[300:]
    # a validation split of 3 records per class both probes get right, plus one only the
    # converged probe gets right: a gain of one record is no evidence, the reference stays
    both = np.concatenate([np.flatnonzero(right_r & right_c & (y[300:] == c))[:3] for c in range(4)])
    split = 300 + np.append(both, np.flatnonzero(right_c & ~right_r)[0])
    small = fit_probe(x[:300], y[:300], 4, x[split], y[split], config, 0, "local", 0)
    gain, standard_error = paired_gain(y[split], converged[split - 300], reference[split - 300])
    assert 0 < gain < standard_error and small.name == "reference"
    # no evidence at all: the reference
    assert fit_probe(x[:300], y[:300], 4, x[:0], y[:0], config, 0, "local", 0).name == "reference"
    # far from converged vs converged, judged on 100 validation + 300 out-of-fold records: replaced
    large = fit_probe(x[:300], y[:300], 4, x[300:], y[300:], LinearProbeConfig(), 0, "local", 0)
    assert large.name != "reference" and large.evidence == 400
    assert large.scores[large.candidates.index(large.name)] > large.scores[0]


def test_reference_preset_reproduces_the_reference_protocol_bit_for_bit():
    federation = skewed_federation()
    probe = LinearProbeConfig(preset="reference")
    for data in federation.clients:
        rng = np.random.default_rng(data.client_id)
        synthetic_y = np.sort(data.y_train)
        synthetic_x = (data.x_train + 0.1 * rng.standard_normal(data.x_train.shape)).astype(np.float32)
        got = evaluate_with_synthetic(data, synthetic_x, synthetic_y, probe, 7)
        # the pre-preset code, written out
        local = train_linear(data.x_train, data.y_train, data.num_classes, probe, 7, "local", data.client_id)
        synthetic = train_linear(synthetic_x, synthetic_y, data.num_classes, probe, 7, "global", data.client_id)
        expected = blend_evaluation(data.client_id, data.y_val, data.y_test, predict_proba(local, data.x_val),
                                    predict_proba(synthetic, data.x_val), predict_proba(local, data.x_test),
                                    predict_proba(synthetic, data.x_test), DEFAULT_LAMBDAS)
        np.testing.assert_array_equal(got.val_acc, expected.val_acc)
        for metric in expected.test:
            np.testing.assert_array_equal(got.test[metric], expected.test[metric])
        assert got.probes == {"local": "reference", "global": "reference"}


def test_tuned_candidates_include_the_reference_probe_itself():
    data = skewed_federation().clients[0]
    fitted = fit_probe(data.x_train, data.y_train, data.num_classes, data.x_val, data.y_val, LinearProbeConfig(),
                       3, "local", data.client_id)
    reference = train_linear(data.x_train, data.y_train, data.num_classes, LinearProbeConfig(), 3, "local",
                             data.client_id)
    np.testing.assert_array_equal(predict_proba(fitted.models["reference"], data.x_test),
                                  predict_proba(reference, data.x_test))


def poison_test(federation, seed: int = 1):
    """Every test split replaced by extreme (finite) features with permuted labels."""
    rng = np.random.default_rng(seed)
    clients = tuple(dataclasses.replace(c, y_test=rng.permutation(c.y_test),
                                        x_test=(1e3 * rng.standard_normal(c.x_test.shape)).astype(np.float32))
                    for c in federation.clients)
    return dataclasses.replace(federation, clients=clients)


@pytest.mark.parametrize("folds", [0, 5])
def test_tuned_selection_reads_validation_and_train_only(folds):
    """The test split poisoned: same probes, same validation curve (with and without the
    out-of-fold evidence of the train sets)."""
    federation = skewed_federation()
    poisoned = poison_test(federation)
    probe = dataclasses.replace(EvaluationConfig().probe, folds=folds)
    for clean, dirty in zip(federation.clients, poisoned.clients):
        synthetic_x, synthetic_y = clean.x_train[::-1].copy(), clean.y_train[::-1].copy()
        a = evaluate_with_synthetic(clean, synthetic_x, synthetic_y, probe, 0)
        b = evaluate_with_synthetic(dirty, synthetic_x, synthetic_y, probe, 0)
        assert a.probes == b.probes
        np.testing.assert_array_equal(a.val_acc, b.val_acc)
        assert not np.array_equal(a.test["acc"], b.test["acc"])  # the poison reached the test split


@pytest.mark.parametrize("option,value", [("preset", "converged"), ("inverse_l2", (0.1, 0.0)),
                                          ("inverse_l2", ()), ("max_iter", 0), ("tolerance", -1.0),
                                          ("class_weight", "auto"), ("folds", 1), ("folds", -2)])
def test_bad_probe_options_are_user_errors(option, value):
    config = dataclasses.replace(LinearProbeConfig(), **{option: value})
    if option == "inverse_l2" and value == ():
        config = dataclasses.replace(config, include_reference=False)
    with pytest.raises(UserError, match="--evaluation.probe"):
        EvaluationConfig(probe=config).validate()


def test_read_only_features_give_the_same_probabilities_without_a_warning():
    """Arrays from Ray's object store are read-only: the probe copies them instead of
    sharing them with torch (which warns), with the same numbers."""
    import warnings

    x, y = overlapping_blobs(60)
    model = train_linear(x, y, 4, LinearProbeConfig(steps=5), 0)
    frozen = x.copy()
    frozen.flags.writeable = False
    from fedsim.evaluation.classifier import feature_tensor

    assert feature_tensor(frozen).numpy().flags.writeable                 # a copy, not the frozen memory
    assert np.shares_memory(feature_tensor(x).numpy(), x)                 # writable float32: shared
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(predict_proba(model, frozen), predict_proba(model, x))
