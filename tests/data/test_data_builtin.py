"""Built-in datasets (offline) and the synthetic generator's difficulty."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from fedsim.data.builtin import BUILTIN_DATASETS, load_dataset
from fedsim.data.partition import partition_dirichlet
from fedsim.data.synthetic import SyntheticConfig, class_prior, make_synthetic
from fedsim.errors import UserError
from fedsim.seeding import numpy_rng


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small fits: BLAS threads only add contention on a busy 2-core machine (25× slower measured)."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def synthetic(_one_blas_thread):
    return make_synthetic(SyntheticConfig(), seed=0)


def test_digits_and_breast_cancer_load_offline():
    digits = load_dataset("digits", seed=0)
    assert digits.x.shape == (1797, 64) and digits.num_classes == 10 and digits.x.dtype == np.float32
    assert 0.0 <= digits.x.min() and digits.x.max() <= 1.0
    assert digits.class_names == tuple(str(i) for i in range(10))
    cancer = load_dataset("breast-cancer", seed=0)
    assert cancer.x.shape == (569, 30) and cancer.num_classes == 2
    assert cancer.class_names == ("malignant", "benign")
    np.testing.assert_allclose(cancer.x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(cancer.x.std(axis=0), 1.0, atol=1e-4)
    assert BUILTIN_DATASETS == ("synthetic", "synthetic-organs", "digits", "breast-cancer")


def test_unknown_dataset_lists_the_valid_names(tmp_path):
    with pytest.raises(UserError, match="synthetic, synthetic-organs, digits, breast-cancer"):
        load_dataset("cifar10", seed=0)
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.npz"), seed=0)
    path = tmp_path / "e.npz"
    np.savez(path, embeddings=np.ones((4, 3)), labels=np.array([0, 1, 0, 1]))
    assert load_dataset(str(path), seed=0).x.shape == (4, 3)


def test_synthetic_shapes_scale_and_sites(synthetic):
    cfg = SyntheticConfig()
    assert synthetic.x.shape == (cfg.n_samples, cfg.dim) and synthetic.x.dtype == np.float32
    assert synthetic.y.dtype == np.int64 and synthetic.num_classes == cfg.num_classes
    assert sorted(set(synthetic.site)) == sorted(f"site_{i}" for i in range(cfg.num_sites))
    np.testing.assert_allclose(synthetic.x.std(axis=0), 1.0, atol=1e-3)  # DINOv2-like O(1) entries
    norms = np.linalg.norm(synthetic.x, axis=1)
    assert 0.7 * np.sqrt(cfg.dim) < np.median(norms) < 1.3 * np.sqrt(cfg.dim)
    counts = np.bincount(synthetic.y, minlength=cfg.num_classes) / cfg.n_samples
    np.testing.assert_allclose(counts, class_prior(cfg.num_classes, cfg.imbalance), atol=0.02)
    assert counts[0] > 2 * counts[-1]  # imbalance 1: e¹ ≈ 2.7 between the first and last class


def test_synthetic_sites_have_different_class_mixes(synthetic):
    mixes = np.array([np.bincount(synthetic.y[synthetic.site == s], minlength=11) for s in sorted(set(synthetic.site))])
    mixes = mixes / mixes.sum(axis=1, keepdims=True)
    global_mix = np.bincount(synthetic.y) / len(synthetic.y)
    assert np.mean(0.5 * np.abs(mixes - global_mix).sum(axis=1)) > 0.15


def test_synthetic_is_seeded_and_fast():
    start = time.perf_counter()
    a = make_synthetic(SyntheticConfig(), seed=1)
    elapsed = time.perf_counter() - start
    b = make_synthetic(SyntheticConfig(), seed=1)
    c = make_synthetic(SyntheticConfig(n_samples=500, dim=32), seed=2)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.y[:500], c.y)
    assert elapsed < 3.0  # about 0.2 s on a laptop core; generous for loaded CI machines


def test_synthetic_options_are_validated():
    with pytest.raises(UserError, match="--data.synthetic.num-classes"):
        make_synthetic(SyntheticConfig(num_classes=1), seed=0)
    with pytest.raises(UserError, match="--data.synthetic.noise"):
        make_synthetic(SyntheticConfig(noise=-1.0), seed=0)


def _central_accuracy(dataset):
    x_tr, x_te, y_tr, y_te = train_test_split(dataset.x, dataset.y, test_size=0.2, random_state=0, stratify=dataset.y)
    return LogisticRegression(max_iter=300).fit(x_tr, y_tr).score(x_te, y_te), (x_tr, x_te, y_tr, y_te)


def test_synthetic_defaults_are_hard_but_learnable(synthetic):
    accuracy, _ = _central_accuracy(synthetic)
    assert 0.6 < accuracy < 0.97


def test_label_skewed_client_generalises_worse(synthetic):
    central, (x_tr, x_te, y_tr, y_te) = _central_accuracy(synthetic)
    parts = partition_dirichlet(y_tr, 10, 0.1, 50, numpy_rng(0))
    local = max(parts, key=len)  # even the largest skewed client
    accuracy = LogisticRegression(max_iter=300).fit(x_tr[local], y_tr[local]).score(x_te, y_te)
    assert accuracy < central - 0.2


def _cross_site_gap(dataset, sites=("site_0", "site_1")):
    """Mean over sites of (accuracy on the site's own held-out records − on other sites'), seen classes only."""
    x_tr, x_te, y_tr, y_te, s_tr, s_te = train_test_split(
        dataset.x, dataset.y, dataset.site, test_size=0.3, random_state=0, stratify=dataset.y
    )
    gaps = []
    for site in sites:
        model = LogisticRegression(C=0.1, max_iter=100).fit(x_tr[s_tr == site], y_tr[s_tr == site])
        seen = np.isin(y_te, model.classes_)

        def balanced(mask):
            predicted, truth = model.predict(x_te[mask & seen]), y_te[mask & seen]
            return np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)])

        gaps.append(balanced(s_te == site) - balanced(s_te != site))
    return float(np.mean(gaps))


def test_site_shift_makes_a_site_classifier_transfer_worse(synthetic):
    plain = make_synthetic(replace(SyntheticConfig(), site_shift=0.0), seed=0)
    assert _cross_site_gap(synthetic) > _cross_site_gap(plain) + 0.05
