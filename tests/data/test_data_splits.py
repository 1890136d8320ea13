"""Stratified per-client splits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.data.splits import split_sizes, stratified_split
from fedsim.errors import UserError
from fedsim.seeding import numpy_rng


def test_reference_fractions_give_64_16_20():
    labels = np.repeat([0, 1, 2], 100)
    train, val, test = stratified_split(labels, 0.2, 0.2, numpy_rng(0))
    assert (len(train), len(val), len(test)) == (192, 48, 60)
    for part, per_class in ((train, 64), (val, 16), (test, 20)):
        assert np.bincount(labels[part]).tolist() == [per_class] * 3


def test_rare_classes_stay_in_train():
    assert split_sizes(1, 0.2, 0.2) == (1, 0, 0)
    assert split_sizes(2, 0.2, 0.2) == (2, 0, 0)
    assert split_sizes(3, 0.2, 0.2) == (2, 0, 1)
    assert split_sizes(5, 0.9, 0.9) == (1, 0, 4)
    train, val, test = stratified_split(np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), rng=numpy_rng(0))
    assert 0 in train and len(test) == 2 and len(val) == 2


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=200),
    st.floats(0.0, 0.9),
    st.floats(0.0, 0.9),
    st.integers(0, 2**32),
)
def test_split_is_a_stratified_partition(labels, test_fraction, val_fraction, seed):
    labels = np.asarray(labels)
    train, val, test = stratified_split(labels, test_fraction, val_fraction, numpy_rng(seed))
    union = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(union), np.arange(len(labels)))
    for c in np.unique(labels):
        n_c = int(np.sum(labels == c))
        got = tuple(int(np.sum(labels[p] == c)) for p in (train, val, test))
        assert got == split_sizes(n_c, test_fraction, val_fraction)
        assert got[0] >= 1
    again = stratified_split(labels, test_fraction, val_fraction, numpy_rng(seed))
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))


def test_options_are_validated_and_rng_is_required():
    with pytest.raises(UserError, match="--data.test-fraction"):
        stratified_split(np.zeros(4, int), 1.0, 0.2, numpy_rng(0))
    with pytest.raises(UserError, match="--data.val-fraction"):
        stratified_split(np.zeros(4, int), 0.2, -0.1, numpy_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        stratified_split(np.zeros(4, int))
