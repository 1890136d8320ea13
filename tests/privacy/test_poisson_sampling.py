"""Poisson subsampling, measured: each record joins each batch independently with rate q."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.privacy.sampling import poisson_sample


def test_inclusion_rate_is_q_for_every_record_and_batch_sizes_vary():
    n, q, draws = 400, 0.07, 2000
    generator = torch.Generator().manual_seed(7)
    hits = torch.zeros(n)
    sizes = []
    for _ in range(draws):
        batch = poisson_sample(n, q, generator)
        assert batch.dtype == torch.int64
        assert torch.equal(batch, torch.unique(batch))  # sorted, no repeats
        assert batch.numel() == 0 or (0 <= int(batch.min()) and int(batch.max()) < n)
        hits[batch] += 1
        sizes.append(batch.numel())
    rates = hits / draws
    per_record_se = math.sqrt(q * (1 - q) / draws)
    assert float(rates.mean()) == pytest.approx(q, abs=5 * per_record_se / math.sqrt(n))
    assert float((rates - q).abs().max()) < 5 * per_record_se
    # independence across records: per-record rates spread like Binomial(draws, q) / draws
    assert float(rates.std()) == pytest.approx(per_record_se, rel=0.15)
    # batch sizes are Binomial(n, q), not fixed at q·n
    sizes_t = torch.tensor(sizes, dtype=torch.float64)
    assert float(sizes_t.mean()) == pytest.approx(n * q, rel=0.02)
    assert float(sizes_t.std()) == pytest.approx(math.sqrt(n * q * (1 - q)), rel=0.1)


def test_empty_batches_happen_at_the_binomial_rate():
    generator = torch.Generator().manual_seed(1)
    empty = sum(poisson_sample(10, 0.05, generator).numel() == 0 for _ in range(3000)) / 3000
    assert empty == pytest.approx(0.95**10, abs=0.03)


def test_rate_one_takes_every_record_and_bad_rates_are_refused():
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(poisson_sample(13, 1.0, generator), torch.arange(13))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            poisson_sample(10, bad, generator)


def test_same_seed_same_batches():
    a = [poisson_sample(50, 0.3, g) for g in [torch.Generator().manual_seed(4)] for _ in range(5)]
    b = [poisson_sample(50, 0.3, g) for g in [torch.Generator().manual_seed(4)] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
