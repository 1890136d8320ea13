"""The Gaussian noise of DP-SGD, measured: empirical standard deviations against σC/(q·n)
(through the DP trainer, as FedHypeVAE clients run it)."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.privacy.clipped_sums import RecordBatch
from fedsim.privacy.dp_sgd import add_gaussian_noise, clipped_sum, per_sample_gradients
from fedsim.privacy.noise import SeededNoise
from privacy_testkit import (
    CLASSES,
    DIM,
    TINY,
    fixed_plan,
    functional_record_loss,
    tiny_model,
    tiny_records,
    vmap_trainer,
)


def _empty_batch() -> RecordBatch:
    return RecordBatch((torch.zeros(0, DIM), torch.zeros(0, CLASSES), torch.zeros(0, TINY.latent_dim)),
                       (torch.zeros(5, 4),))


def _flat(tensors: dict) -> torch.Tensor:
    return torch.cat([t.reshape(-1).double() for t in tensors.values()])


def _check_gaussian(sample: torch.Tensor, std: float, tolerance: float = 0.03) -> None:
    """Mean ≈ 0, std ≈ ``std`` (relative ``tolerance``), and the 1σ mass of a Gaussian."""
    n = sample.numel()
    assert n >= 50_000
    assert abs(float(sample.mean())) < 5 * std / math.sqrt(n)
    assert float(sample.std()) == pytest.approx(std, rel=tolerance)
    within = float((sample.abs() < std).double().mean())
    assert within == pytest.approx(0.6827, abs=0.01)


def test_empty_poisson_batch_releases_noise_of_std_sigma_C_over_expected_batch():
    model = tiny_model(1.0)
    sigma, clip, q, n = 1.3, 1.5, 0.05, 200  # expected batch q·n = 10 although |B| = 0
    trainer = vmap_trainer(model, fixed_plan(n, q, sigma), clip, seed=11)
    draws = [_flat(trainer.gradient(_empty_batch())) for _ in range(60)]
    _check_gaussian(torch.cat(draws), sigma * clip / (q * n))
    # fresh noise at every call
    assert not torch.equal(draws[0], draws[1])
    # same generator state -> same noise (determinism)
    again = vmap_trainer(model, fixed_plan(n, q, sigma), clip, seed=11).gradient(_empty_batch())
    torch.testing.assert_close(_flat(again), draws[0])


def test_noise_on_a_real_batch_is_independent_of_the_data():
    model = tiny_model(1.0)
    params = {n: p.detach() for n, p in model.named_parameters()}
    records, shared = tiny_records(8)
    loss = functional_record_loss(model)
    sigma, clip, expected_batch = 0.8, 1.0, 4.0
    signal = _flat(clipped_sum(per_sample_gradients(loss, params, records, shared), clip)) / expected_batch
    trainer = vmap_trainer(model, fixed_plan(8, expected_batch / 8, sigma), clip, seed=3)
    residuals = torch.cat([_flat(trainer.gradient(RecordBatch(records, shared))) - signal for _ in range(60)])
    _check_gaussian(residuals, sigma * clip / expected_batch)


def test_add_gaussian_noise_on_zeros_has_the_requested_std():
    noise = SeededNoise(torch.Generator().manual_seed(0))
    zeros = {"a": torch.zeros(300, 200), "b": torch.zeros(40_000)}
    noisy = add_gaussian_noise(zeros, 2.5, noise)
    _check_gaussian(_flat(noisy), 2.5, tolerance=0.02)
    # the two tensors get independent noise
    assert abs(float(torch.corrcoef(torch.stack([noisy["a"].reshape(-1)[:40_000], noisy["b"]]))[0, 1])) < 0.02
    assert add_gaussian_noise(zeros, 0.0, noise)["a"] is zeros["a"]  # σ = 0: no noise
