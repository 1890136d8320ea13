"""The DP release of class counts: noise of std σ on every count, and the label
distribution derived from it (post-processing)."""

from __future__ import annotations

import numpy as np
import torch

from fedsim.privacy.labels import label_distribution, release_label_counts
from fedsim.privacy.noise import SeededNoise


def test_label_release_noise_and_distribution():
    labels = np.array([0, 0, 1, 2, 2, 2])
    exact = release_label_counts(labels, 4, 0.0, SeededNoise(torch.Generator()))
    assert exact.tolist() == [2.0, 1.0, 3.0, 0.0]
    noisy = torch.stack([release_label_counts(labels, 4, 3.0, SeededNoise(torch.Generator().manual_seed(i)))
                         for i in range(2000)])
    assert abs(float((noisy - exact).std()) - 3.0) < 0.15
    assert torch.allclose(label_distribution(torch.tensor([2.0, -1.0, 2.0])), torch.tensor([0.5, 0.0, 0.5]))
    assert torch.allclose(label_distribution(torch.tensor([-1.0, -2.0])), torch.tensor([0.5, 0.5]))
