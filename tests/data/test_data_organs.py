"""The ``synthetic-organs`` preset (fedsim.data.organs) and the unchanged ``synthetic`` default."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from fedsim.data import organs
from fedsim.data.builtin import generated_dataset, load_dataset
from fedsim.data.federation import DataConfig, load_federation
from fedsim.data.synthetic import SyntheticConfig, make_synthetic
from fedsim.errors import UserError

ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
          "liver", "lung-left", "lung-right", "pancreas", "spleen")


def _digest(dataset) -> str:
    digest = hashlib.sha256()
    for array in (dataset.x, dataset.y):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update("|".join(dataset.site).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def organs_384():
    start = time.perf_counter()
    dataset = load_dataset("synthetic-organs", seed=0)
    return dataset, time.perf_counter() - start


def test_default_synthetic_is_bit_identical_to_before_the_preset():
    # SHA-256 of (x, y, site) computed with the generator as it was before synthetic-organs existed.
    assert _digest(make_synthetic(SyntheticConfig(), 0)) == (
        "78f047f5585c96a24d3b09a69beb1b7662c71c560d4c97b36dd2e24197d6e8b1")
    assert _digest(make_synthetic(SyntheticConfig(n_samples=500, dim=32, num_sites=3), 7)) == (
        "b2d1542e5f4972f49b95b868bffe45b34fbf65e4f8c10c8d7acebb1636dd105b")
    plain = make_synthetic(SyntheticConfig(n_samples=500, dim=32, num_sites=3), 7)
    assert plain.name == "synthetic" and plain.class_names == tuple(f"class_{c}" for c in range(11))


def test_class_counts_are_the_documented_sizes_and_total_25211(organs_384):
    dataset, _ = organs_384
    assert sum(organs.SPLIT_SIZES.values()) == organs.NUM_RECORDS == 25_211 == len(dataset)
    # Independent recomputation of the documented stand-in rule: largest remainder of 25,211·exp(-c/10)/Σ.
    weights = np.array([np.exp(-c / 10) for c in range(11)])
    quotas = 25_211 * weights / weights.sum()
    counts = np.floor(quotas).astype(int)
    for c in sorted(range(11), key=lambda c: counts[c] - quotas[c])[: 25_211 - counts.sum()]:
        counts[c] += 1
    assert tuple(int(v) for v in counts) == organs.CLASS_COUNTS
    np.testing.assert_array_equal(np.bincount(dataset.y, minlength=11), organs.CLASS_COUNTS)
    assert "stand-in" in dataset.metadata["class_counts_source"]
    assert dataset.class_names == ORGANS and dataset.name == "synthetic-organs"


def test_organs_is_384_dimensional_standardised_and_generated_quickly(organs_384):
    dataset, elapsed = organs_384
    assert dataset.x.shape == (25_211, 384) and dataset.x.dtype == np.float32
    np.testing.assert_allclose(dataset.x.std(axis=0), 1.0, atol=1e-3)
    assert sorted(set(dataset.site)) == sorted(f"site_{i}" for i in range(10))
    assert dataset.metadata["config"]["n_samples"] == 25_211
    assert elapsed < 20.0  # ≈ 1.9 s of CPU on one core; wall time on a loaded 2-core machine up to ≈ 8 s


def test_organs_is_seeded(organs_384):
    dataset, _ = organs_384
    again = generated_dataset.__wrapped__("synthetic-organs", 0, SyntheticConfig())  # generated anew, not the cached one
    np.testing.assert_array_equal(again.x, dataset.x)
    np.testing.assert_array_equal(again.y, dataset.y)
    np.testing.assert_array_equal(again.site, dataset.site)


def test_generated_datasets_are_made_once_per_process_and_read_only(organs_384):
    dataset, _ = organs_384
    assert load_dataset("synthetic-organs", seed=0) is dataset
    assert load_dataset("synthetic-organs", seed=1) is not dataset
    with pytest.raises(ValueError, match="read-only"):
        dataset.x[0, 0] = 1.0


def test_organs_768_option():
    dataset = load_dataset("synthetic-organs", seed=0, synthetic=SyntheticConfig(dim=768))
    assert dataset.x.shape == (25_211, 768)
    np.testing.assert_array_equal(np.bincount(dataset.y, minlength=11), organs.CLASS_COUNTS)


def test_dirichlet_federation_has_the_papers_train_size_per_client(organs_384):
    dataset, _ = organs_384
    federation = load_federation(DataConfig(dataset="synthetic-organs", partition="dirichlet", alpha=0.3), seed=1)
    assert federation.num_clients == 10 and federation.dim == 384
    assert sum(len(c.y_train) + len(c.y_val) + len(c.y_test) for c in federation.clients) == 25_211
    assert 1_550 < np.mean([c.n_train for c in federation.clients]) < 1_680  # paper: ≈ 1,600
    pooled = np.concatenate([c.y_train for c in federation.clients]
                            + [c.y_val for c in federation.clients] + [c.y_test for c in federation.clients])
    np.testing.assert_array_equal(np.bincount(pooled, minlength=11), organs.CLASS_COUNTS)
    # seed 1 generates other records (same class sizes) than the fixture's seed 0
    seed_0_rows = {row.tobytes() for row in dataset.x}
    assert not any(row.tobytes() in seed_0_rows for row in federation.clients[0].x_train)


def test_options_the_preset_fixes_are_refused():
    for option, flag in (({"n_samples": 5000}, "n-samples"), ({"imbalance": 0.0}, "imbalance"),
                         ({"num_classes": 4}, "num-classes")):
        with pytest.raises(UserError, match=f"--data.synthetic.{flag} .* synthetic-organs fixes it"):
            load_dataset("synthetic-organs", seed=0, synthetic=SyntheticConfig(**option))


def test_exact_class_counts_are_checked():
    with pytest.raises(ValueError, match="summing to 30"):
        make_synthetic(SyntheticConfig(n_samples=30, num_classes=3, dim=4), 0, class_counts=(10, 10, 9))
    small = make_synthetic(SyntheticConfig(n_samples=30, num_classes=3, dim=4), 0, class_counts=(5, 10, 15))
    np.testing.assert_array_equal(np.bincount(small.y), [5, 10, 15])
