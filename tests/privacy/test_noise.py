"""The seeded noise source, measured: Poisson subsampling (each record joins each batch
independently with rate q), Gaussian draws, and its stream (state, reseeding)."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.privacy.noise import NoiseSource, SeededNoise


def test_inclusion_rate_is_q_for_every_record_and_batch_sizes_vary():
    n, q, draws = 400, 0.07, 2000
    noise = SeededNoise(torch.Generator().manual_seed(7))
    hits = torch.zeros(n)
    sizes = []
    for _ in range(draws):
        batch = noise.poisson_batch(n, q)
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
    noise = SeededNoise(torch.Generator().manual_seed(1))
    empty = sum(noise.poisson_batch(10, 0.05).numel() == 0 for _ in range(3000)) / 3000
    assert empty == pytest.approx(0.95**10, abs=0.03)


def test_rate_one_takes_every_record_and_bad_rates_are_refused():
    noise = SeededNoise(torch.Generator().manual_seed(0))
    assert torch.equal(noise.poisson_batch(13, 1.0), torch.arange(13))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            noise.poisson_batch(10, bad)


def test_same_seed_same_batches():
    a = [n.poisson_batch(50, 0.3) for n in [SeededNoise(torch.Generator().manual_seed(4))] for _ in range(5)]
    b = [n.poisson_batch(50, 0.3) for n in [SeededNoise(torch.Generator().manual_seed(4))] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_gaussian_draws_have_the_requested_std_dtype_and_shape():
    noise = SeededNoise(torch.Generator().manual_seed(5))
    draws = noise.gaussian((400, 250), 2.5, dtype=torch.float64)
    assert draws.shape == (400, 250) and draws.dtype == torch.float64
    n = draws.numel()
    assert abs(float(draws.mean())) < 5 * 2.5 / math.sqrt(n)
    assert float(draws.std()) == pytest.approx(2.5, rel=0.02)
    assert noise.gaussian((3,), 1.0).dtype == torch.float32


def test_seeded_noise_is_the_generator_stream_in_call_order():
    """Same draws, in the same order, as the torch calls on the generator it wraps
    (``rand < q`` masks, ``std · randn``): seeded runs reproduce bit for bit."""
    noise = SeededNoise(torch.Generator().manual_seed(3))
    reference = torch.Generator().manual_seed(3)
    batch = noise.poisson_batch(30, 0.4)
    gaussian = noise.gaussian((4, 5), 0.7)
    expected_batch = torch.nonzero(torch.rand(30, generator=reference) < 0.4).flatten()
    expected_gaussian = 0.7 * torch.randn((4, 5), generator=reference)
    assert torch.equal(batch, expected_batch) and torch.equal(gaussian, expected_gaussian)


def test_state_round_trip_continues_the_stream_and_reseeding_starts_a_new_one():
    noise = SeededNoise(torch.Generator().manual_seed(8))
    assert isinstance(noise, NoiseSource)
    noise.gaussian((10,), 1.0)
    saved = noise.state_dict()
    ahead = noise.gaussian((10,), 1.0)
    noise.load_state_dict(saved)
    assert torch.equal(noise.gaussian((10,), 1.0), ahead)
    noise.load_state_dict(saved)
    noise.reseed(12345)
    assert not torch.equal(noise.gaussian((10,), 1.0), ahead)
    again = SeededNoise(torch.Generator())
    again.reseed(12345)
    noise.reseed(12345)
    assert torch.equal(again.gaussian((10,), 1.0), noise.gaussian((10,), 1.0))
