"""Client partitions: disjoint, complete, seeded; Dirichlet skew behaves like α says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsim.data.partition import partition, partition_by_site, partition_dirichlet, partition_iid
from fedsim.errors import UserError
from fedsim.seeding import numpy_rng

FAST = settings(max_examples=30, deadline=None, derandomize=True)


def _assert_partition(parts, n, num_clients):
    assert len(parts) == num_clients
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    union = np.concatenate(parts)
    assert len(union) == n and np.array_equal(np.sort(union), np.arange(n))


@st.composite
def labelled(draw):
    n = draw(st.integers(2, 300))
    k = draw(st.integers(2, 6))
    labels = np.asarray(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    return labels, draw(st.integers(1, min(n, 12))), draw(st.integers(0, 2**32))


@FAST
@given(labelled())
def test_iid_partition(case):
    labels, m, seed = case
    parts = partition_iid(len(labels), m, numpy_rng(seed))
    _assert_partition(parts, len(labels), m)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, partition_iid(len(labels), m, numpy_rng(seed))))


@FAST
@given(labelled(), st.sampled_from([0.05, 0.3, 1.0, 100.0]))
def test_dirichlet_partition_is_disjoint_complete_deterministic(case, alpha):
    labels, m, seed = case
    parts = partition_dirichlet(labels, m, alpha, 0, numpy_rng(seed))
    _assert_partition(parts, len(labels), m)
    again = partition_dirichlet(labels, m, alpha, 0, numpy_rng(seed))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def _label_mixes(labels, parts, k):
    counts = np.array([np.bincount(labels[p], minlength=k) for p in parts], dtype=float)
    return counts[counts.sum(axis=1) > 0] / counts[counts.sum(axis=1) > 0].sum(axis=1, keepdims=True)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.integers(0, 2**32))
def test_large_alpha_is_close_to_global_mix(seed):
    labels = numpy_rng(seed, "labels").integers(0, 8, size=4000)
    parts = partition_dirichlet(labels, 8, 1e4, 20, numpy_rng(seed))
    global_mix = np.bincount(labels, minlength=8) / len(labels)
    total_variation = 0.5 * np.abs(_label_mixes(labels, parts, 8) - global_mix).sum(axis=1)
    assert total_variation.max() < 0.05
    assert np.ptp([len(p) for p in parts]) < 0.1 * len(labels) / 8


@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.integers(0, 2**32))
def test_small_alpha_concentrates_clients_on_few_classes(seed):
    labels = numpy_rng(seed, "labels").integers(0, 10, size=3000)
    mixes = _label_mixes(labels, partition_dirichlet(labels, 10, 0.05, 0, numpy_rng(seed)), 10)
    top_two = np.sort(mixes, axis=1)[:, -2:].sum(axis=1)
    effective = np.exp(-np.sum(np.where(mixes > 0, mixes * np.log(np.where(mixes > 0, mixes, 1)), 0), axis=1))
    assert top_two.mean() > 0.75 and effective.mean() < 4.0  # vs 10 classes for an IID client


def test_min_samples_is_enforced_and_reported():
    labels = np.repeat(np.arange(5), 40)
    parts = partition_dirichlet(labels, 5, 0.5, 15, numpy_rng(1))
    assert min(len(p) for p in parts) >= 15
    with pytest.raises(UserError, match=r"--data\.min-samples.*--data\.alpha"):
        partition_dirichlet(labels, 10, 0.01, 19, numpy_rng(1), max_tries=5)
    with pytest.raises(UserError, match="exceeds the 200 records"):
        partition_dirichlet(labels, 10, 0.3, 21, numpy_rng(1))


@pytest.mark.parametrize(("num_clients", "alpha"), [(0, 0.3), (201, 0.3), (5, 0.0), (5, -1.0), (5, float("nan"))])
def test_invalid_options(num_clients, alpha):
    labels = np.repeat(np.arange(4), 50)
    with pytest.raises(UserError, match=r"--data\.(num-clients|alpha)"):
        partition(labels, None, "dirichlet", num_clients, alpha, 0, seed=0)


def test_iid_rejects_more_clients_than_records():
    with pytest.raises(UserError, match="between 1 and the number of records"):
        partition_iid(3, 4, numpy_rng(0))


def test_site_partition_one_client_per_sorted_site():
    sites = np.array(["b", "a", "c", "a", "b", "b"], dtype=object)
    parts = partition_by_site(sites)
    assert [p.tolist() for p in parts] == [[1, 3], [0, 4, 5], [2]]
    parts = partition(np.zeros(6, int), sites, "site", num_clients=99, alpha=1.0, min_samples=0, seed=3)
    assert len(parts) == 3
    with pytest.raises(UserError, match="no.*site|site column"):
        partition_by_site(None)


def test_dispatcher_is_seeded_and_rejects_unknown_scheme():
    labels = np.repeat(np.arange(3), 30)
    a = partition(labels, None, "dirichlet", 4, 0.3, 5, seed=7)
    b = partition(labels, None, "dirichlet", 4, 0.3, 5, seed=7)
    c = partition(labels, None, "dirichlet", 4, 0.3, 5, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a, c))
    with pytest.raises(UserError, match="iid, dirichlet, site"):
        partition(labels, None, "round-robin", 4, 0.3, 5, seed=7)
