"""The closed-form KL and the MMD² of Eq. 6, against Monte Carlo and direct sums, and the
decomposed per-record MMD used under DP."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.models.losses import (
    gaussian_kl,
    mmd2,
    mmd_cross_term,
    mmd_synthetic_term,
    multi_kernel,
)


def _log_normal(z, mu, var):
    return (-0.5 * (z - mu) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)).sum(-1)


def test_gaussian_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu_q = torch.tensor([0.3, -1.0, 0.5], dtype=torch.float64)
    logvar_q = torch.tensor([-0.5, 0.2, 0.0], dtype=torch.float64)
    mu_p = torch.tensor([1.0, 0.0, -0.5], dtype=torch.float64)
    log_sigma_p = torch.tensor([0.1, -0.3, 0.4], dtype=torch.float64)
    closed = float(gaussian_kl(mu_q, logvar_q, mu_p, log_sigma_p))
    var_q, var_p = logvar_q.exp(), (2 * log_sigma_p).exp()
    z = mu_q + var_q.sqrt() * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    monte_carlo = float((_log_normal(z, mu_q, var_q) - _log_normal(z, mu_p, var_p)).mean())
    assert closed > 1.0  # a KL well away from 0, so a relative tolerance means something
    assert closed == pytest.approx(monte_carlo, rel=0.02)
    # and torch.distributions agrees term by term
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(mu_q, var_q.sqrt()),
                                                  torch.distributions.Normal(mu_p, var_p.sqrt())).sum()
    assert closed == pytest.approx(float(reference), rel=1e-10)


def test_gaussian_kl_is_zero_for_equal_gaussians_and_batched_over_leading_axes():
    mu = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    logvar = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(gaussian_kl(mu, logvar, mu, 0.5 * logvar), torch.zeros(5), atol=1e-6, rtol=0)
    shifted = gaussian_kl(mu, logvar, mu + 1.0, 0.5 * logvar)
    assert shifted.shape == (5,) and bool((shifted > 0).all())


def test_multi_kernel_is_a_symmetric_kernel_with_unit_diagonal():
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    k = multi_kernel(x, x)
    torch.testing.assert_close(k, k.T)
    torch.testing.assert_close(torch.diagonal(k), torch.ones(30, dtype=torch.float64))
    assert float(torch.linalg.eigvalsh(k).min()) > -1e-10  # positive semi-definite
    # the formula of the module docstring, entry by entry
    a, b = x[4], x[9]
    expected = sum(math.exp(-float(((a - b) ** 2).sum()) / (2 * h * h * 6)) for h in (0.5, 1.0, 2.0, 4.0)) / 4
    assert float(k[4, 9]) == pytest.approx(expected, rel=1e-12)


def test_mmd2_is_zero_for_identical_samples_and_grows_with_a_mean_shift():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(400, 8, generator=g, dtype=torch.float64)
    y_noise = torch.randn(400, 8, generator=g, dtype=torch.float64)
    assert abs(float(mmd2(x, x))) < 1e-12
    direction = torch.ones(8, dtype=torch.float64) / math.sqrt(8)
    values = [float(mmd2(x, y_noise + shift * direction)) for shift in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert values[0] < 0.01  # two samples of the same law
    assert all(later > earlier for earlier, later in zip(values, values[1:]))
    assert values[-1] > 20 * values[0]


def test_decomposed_per_record_mmd_averages_to_mmd2_minus_the_real_real_term():
    g = torch.Generator().manual_seed(5)
    real = torch.randn(25, 6, generator=g, dtype=torch.float64)
    synthetic = 0.5 + torch.randn(7, 6, generator=g, dtype=torch.float64)
    per_record = torch.stack([mmd_cross_term(x, synthetic) for x in real])
    # independent: the cross term written as a double loop
    loop = [-2.0 * sum(float(multi_kernel(x[None], s[None])[0, 0]) for s in synthetic) / 7 for x in real]
    torch.testing.assert_close(per_record, torch.tensor(loop, dtype=torch.float64))
    decomposed = float(per_record.mean() + mmd_synthetic_term(synthetic))
    real_real = float(multi_kernel(real, real).mean())
    assert decomposed == pytest.approx(float(mmd2(real, synthetic)) - real_real, rel=1e-12)
