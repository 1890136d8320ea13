"""Meta-code fitting (Eq. 11, 13) recovers a generator's class moments from targets made
by a known code v*."""

from __future__ import annotations

import pytest
import torch

from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.fedhypevae.metacode import fit_meta_codes, meta_code_objective
from fedsim.algorithms.fedhypevae.synthesis import mixed_generation
from fedsim.models.fedhypevae import FedHypeVAEModel
from fedsim.models.init import seeded
from fedsim.privacy.statistics import ClassMoments

CONFIG = FedHypeVAEConfig(hidden_dim=16, latent_dim=4, code_dim=4, hyper_hidden=8, label_dim=4,
                          training="dp-sgd", observation_variance=False)
V_STAR = torch.tensor([1.2, -0.8, 0.5, 1.0])


@pytest.fixture
def model() -> FedHypeVAEModel:
    with seeded(0, "test-meta-code"):
        m = FedHypeVAEModel(12, 3, CONFIG, torch.Generator().manual_seed(0))
        # a visibly code-dependent decoder (the default head starts near the identity modulation)
        torch.nn.init.normal_(m.decoder.head.weight, std=0.3)
    return m


def class_moments(model, codes, weights, samples=20_000, seed=1):
    """Monte Carlo class means and diagonal covariances of the generator (independent of
    the fitting code's noise: many samples, another seed)."""
    noise = torch.randn(samples, CONFIG.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        modulation, context = mixed_generation(model, codes, weights)
        means, variances = [], []
        for y in range(3):
            onehot = torch.zeros(samples, 3)
            onehot[:, y] = 1.0
            x = model.sample(modulation, context, onehot, noise)
            means.append(x.mean(0))
            variances.append(x.var(0, unbiased=False))
    return torch.stack(means), torch.stack(variances)


def _relative(a, b):
    return float((a - b).norm() / b.norm())


def test_fit_recovers_the_class_moments_of_a_known_code(model):
    means, variances = class_moments(model, V_STAR[None], torch.ones(1))
    targets = ClassMoments(means, variances, torch.full((3,), 1 / 3), torch.ones(3, dtype=torch.bool))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(5)
    start = 0.1 * torch.randn(1, 4, generator=torch.Generator().manual_seed(5))  # the fit's first draw

    codes, weights, history = fit_meta_codes(model, targets, num_codes=1, steps=200, lr=0.05, samples=64,
                                             beta=1.0, radius=3.0, generator=generator)

    fitted_means, fitted_vars = class_moments(model, codes, weights)
    start_means, _ = class_moments(model, start, torch.ones(1))
    centred = lambda a: a - a.mean(0)  # noqa: E731  (class-specific part of the means)
    assert _relative(fitted_means, means) < 0.05
    assert _relative(fitted_means, means) < 0.1 * _relative(start_means, means)
    assert _relative(centred(fitted_means), centred(means)) < 0.1 * _relative(centred(start_means), centred(means))
    assert _relative(fitted_vars, variances) < 0.1
    assert history[-1] < 0.01 * history[0]
    assert weights.tolist() == [1.0] and float(codes.norm()) <= 3.0 + 1e-6
    # Φ is not touched by the fit (it only moves the code)
    for name, value in model.named_parameters():
        assert torch.equal(value.detach(), before[name]), name


def test_invalid_classes_are_ignored_and_mixtures_are_proper(model):
    means, variances = class_moments(model, V_STAR[None], torch.ones(1))
    garbage = means.clone()
    garbage[1] = 1e3  # an invalid (too noisy) class must not pull the fit
    valid = torch.tensor([True, False, True])
    targets = ClassMoments(garbage, variances, torch.full((3,), 1 / 3), valid)
    noise = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    at_star = meta_code_objective(model, V_STAR[None], torch.zeros(1), targets, noise, 1.0)
    assert float(at_star.detach()) < 0.01  # class 1's garbage target is not in the objective

    codes, weights, history = fit_meta_codes(model, targets, num_codes=2, steps=60, lr=0.05, samples=64,
                                             beta=1.0, radius=1.0, generator=torch.Generator().manual_seed(6))
    assert codes.shape == (2, 4) and weights.shape == (2,)
    assert float(weights.sum()) == pytest.approx(1.0) and bool((weights > 0).all())
    assert bool((codes.norm(dim=1) <= 1.0 + 1e-6).all())  # projected onto the radius-1 ball
    assert history[-1] < history[0]

    none_valid = ClassMoments(means, variances, torch.full((3,), 1 / 3), torch.zeros(3, dtype=torch.bool))
    _, _, empty = fit_meta_codes(model, none_valid, 1, 10, 0.05, 8, 1.0, 3.0, torch.Generator().manual_seed(0))
    assert empty == []
