"""Fidelity metrics: MMD², precision/recall, density/coverage."""

from __future__ import annotations

import math

import numpy as np

from fedsim.evaluation.fidelity import fidelity, knn_radii


def blobs(n: int, shift: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 4)) + shift).astype(np.float32)


def test_same_distribution_scores_well():
    scores = fidelity(blobs(400, 0.0, 0), blobs(400, 0.0, 1), k=5)
    assert scores["mmd2"] < 0.01
    assert scores["precision"] > 0.9 and scores["recall"] > 0.9 and scores["coverage"] > 0.9
    assert 0.7 < scores["density"] < 1.3


def test_shifted_distribution_scores_badly():
    scores = fidelity(blobs(400, 0.0, 0), blobs(400, 6.0, 1), k=5)
    assert scores["mmd2"] > 0.1
    assert scores["precision"] < 0.05 and scores["recall"] < 0.05 and scores["coverage"] < 0.05


def test_mode_collapse_keeps_precision_but_loses_recall():
    real = blobs(400, 0.0, 0)
    collapsed = np.repeat(real[:1], 400, axis=0) + 0.01 * blobs(400, 0.0, 2)
    scores = fidelity(real, collapsed, k=5)
    assert scores["precision"] > 0.9 and scores["recall"] < 0.1 and scores["coverage"] < 0.1


def test_no_synthetic_set_gives_nan_and_subsampling_is_seeded():
    assert all(math.isnan(v) for v in fidelity(blobs(50, 0, 0), None).values())
    a = fidelity(blobs(300, 0, 0), blobs(300, 0.5, 1), max_samples=100, seed=3)
    b = fidelity(blobs(300, 0, 0), blobs(300, 0.5, 1), max_samples=100, seed=3)
    assert a == b


def test_knn_radius_excludes_the_point_itself():
    x = np.array([[0.0], [1.0], [3.0]])
    import torch

    assert knn_radii(torch.as_tensor(x), 1).tolist() == [1.0, 1.0, 2.0]
