"""Options of the synthetic set (size, labels, mix) and their validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedsim.errors import UserError
from fedsim.evaluation.downstream import EvaluationConfig, proportional_counts, synthetic_labels_for
from test_probe import skewed_federation


def never(size: int) -> np.ndarray:
    raise AssertionError("the DP label distribution must not be drawn")


def test_reference_labels_are_the_clients_train_labels():
    for data in skewed_federation().clients:
        labels = synthetic_labels_for(data, never, EvaluationConfig())
        np.testing.assert_array_equal(labels, np.sort(data.y_train))


@pytest.mark.parametrize("size,expected", [("3x", lambda n: 3 * n), ("0.5x", lambda n: round(n / 2)),
                                           ("1000", lambda n: 1000)])
def test_synthetic_size_scales_the_clients_label_counts(size, expected):
    for data in skewed_federation().clients:
        labels = synthetic_labels_for(data, never, EvaluationConfig(synthetic_size=size))
        assert len(labels) == expected(len(data.y_train))
        counts, wanted = np.bincount(labels, minlength=data.num_classes), np.bincount(data.y_train,
                                                                                         minlength=data.num_classes)
        np.testing.assert_allclose(counts, wanted * len(labels) / len(data.y_train), atol=1)
        assert np.all(counts[wanted == 0] == 0)


def test_balanced_labels_cover_every_class_equally_and_global_ones_are_drawn():
    data = skewed_federation().clients[0]
    labels = synthetic_labels_for(data, never, EvaluationConfig(synthetic_labels="balanced", synthetic_size="10"))
    assert sorted(np.bincount(labels, minlength=data.num_classes).tolist()) == sorted(
        proportional_counts(np.ones(data.num_classes), 10).tolist())
    assert np.ptp(np.bincount(labels, minlength=data.num_classes)) <= 1
    drawn = synthetic_labels_for(data, lambda size: np.zeros(size, dtype=np.int64),
                                 EvaluationConfig(synthetic_labels="global", synthetic_size="2x"))
    assert len(drawn) == 2 * len(data.y_train)


def test_proportional_counts_sum_to_the_total():
    assert proportional_counts(np.array([1, 1, 1]), 10).tolist() == [4, 3, 3]
    assert proportional_counts(np.array([5, 0, 2]), 7).tolist() == [5, 0, 2]
    assert proportional_counts(np.array([5, 0, 2]), 14).tolist() == [10, 0, 4]


@pytest.mark.parametrize("option,value", [("synthetic_size", "0x"), ("synthetic_size", "many"),
                                          ("synthetic_size", "0"), ("synthetic_labels", "uniform"),
                                          ("mix", "both"), ("mix_lambdas", (0.0, 0.5)),
                                          ("mix_lambdas", (1.0, 1.5))])
def test_bad_synthetic_set_options_are_user_errors(option, value):
    with pytest.raises(UserError, match="--evaluation." + option.replace("_", "-")):
        dataclasses.replace(EvaluationConfig(), **{option: value}).validate()


def test_local_probes_are_reused_only_for_the_same_inputs(monkeypatch):
    """The per-process memo of local probes: a hit only when every input of fit_probe is
    the same; a changed train, validation, option or seed refits (and equals a fresh fit)."""
    from fedsim.evaluation import downstream
    from fedsim.evaluation.classifier import LinearProbeConfig
    from fedsim.evaluation.probe import fit_probe

    monkeypatch.setattr(downstream, "_local_probes", downstream.OrderedDict())
    data = skewed_federation().clients[0]
    config = LinearProbeConfig(inverse_l2=(0.1, 1.0), folds=2)
    first = downstream.local_probe(data, config, 3)
    assert downstream.local_probe(data, config, 3) is first
    fresh = fit_probe(data.x_train, data.y_train, data.num_classes, data.x_val, data.y_val, config, 3,
                      "local", data.client_id)
    np.testing.assert_array_equal(first.probabilities(data.x_test), fresh.probabilities(data.x_test))
    x_train = data.x_train.copy()
    x_train[0, 0] += 1.0
    changed = [dataclasses.replace(data, x_train=x_train), dataclasses.replace(data, y_val=data.y_val[::-1].copy()),
               dataclasses.replace(data, x_test=data.x_test * 0)]  # the test split is not an input
    keys = {downstream.local_probe_key(d, config, 3) for d in changed[:2]}
    keys |= {downstream.local_probe_key(data, dataclasses.replace(config, folds=3), 3),
             downstream.local_probe_key(data, config, 4), downstream.local_probe_key(data, config, 3)}
    assert len(keys) == 5
    assert downstream.local_probe_key(changed[2], config, 3) == downstream.local_probe_key(data, config, 3)
    refit = downstream.local_probe(changed[0], config, 3)
    assert refit is not first
    expected = fit_probe(x_train, data.y_train, data.num_classes, data.x_val, data.y_val, config, 3, "local",
                         data.client_id)
    np.testing.assert_array_equal(refit.probabilities(data.x_test), expected.probabilities(data.x_test))
    monkeypatch.setattr(downstream, "LOCAL_PROBE_CACHE_SIZE", 1)
    downstream.local_probe(data, config, 5)
    assert list(downstream._local_probes) == [downstream.local_probe_key(data, config, 5)]
