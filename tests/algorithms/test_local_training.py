"""The shared local DP-SGD step, the DP label-count release and mechanism kinds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fedsim.algorithms.local_training import LocalDPSGD, load_shared, shared_delta
from fedsim.privacy.accounting import ClientAccountant
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.labels import label_distribution, release_label_counts
from fedsim.privacy.plan import DPSGDPlan


def setup(private: bool, noise: float = 0.0, records: int = 8):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.randn(records, 3)
    y = torch.arange(records) % 2
    plan = DPSGDPlan(num_records=records, sample_rate=1.0, expected_batch_size=float(records),
                     steps_per_epoch=1, total_steps=1, noise_multiplier=noise, target_epsilon=1.0)
    privacy = PrivacyConfig(epsilon=1.0 if private else math.inf, clip_norm=0.1)
    params = dict(model.named_parameters())
    accountant = ClientAccountant("rdp", 1e-4)
    trainer = LocalDPSGD(params, torch.optim.SGD(params.values(), lr=1.0), privacy, plan, accountant,
                         torch.Generator().manual_seed(0))

    def batch_losses(xb, yb):
        return lambda: nn.functional.cross_entropy(model(xb), yb, reduction="none")
    return model, x, y, trainer, batch_losses


def test_private_step_is_the_clipped_mean_plus_record_free_terms():
    model, x, y, trainer, batch_losses = setup(private=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = {n: torch.zeros_like(p) for n, p in before.items()}
    for i in range(len(x)):  # per-record loop, joint clipping to C = 0.1
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(x[i])[None], y[i][None]),
                                    list(model.parameters()))
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        for (name, _), g in zip(model.named_parameters(), grads):
            expected[name] += g * min(1.0, 0.1 / float(norm)) / len(x)
    penalty_weight = 0.3
    trainer.step(model, batch_losses(x, y), len(x), penalty=lambda: penalty_weight * model.weight.pow(2).sum())
    expected["weight"] += 2 * penalty_weight * before["weight"]
    for name, p in model.named_parameters():
        torch.testing.assert_close(before[name] - p.detach(), expected[name], rtol=1e-4, atol=1e-6)
    assert trainer.accountant.history == [(0.0, 1.0, 1)] and trainer.accountant.kinds == ["dp-sgd"]


def test_non_private_step_is_plain_sgd_and_reads_infinite_epsilon():
    model, x, y, trainer, batch_losses = setup(private=False)
    before = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    trainer.step(model, batch_losses(x, y), len(x))
    for b, g, p in zip(before, grads, model.parameters()):
        torch.testing.assert_close(b - g, p.detach())
    assert math.isinf(trainer.accountant.epsilon())


def test_noise_has_std_sigma_c_over_expected_batch():
    model, x, y, trainer, batch_losses = setup(private=True, noise=2.0, records=4)
    draws = torch.stack([torch.cat([g.flatten() for g in trainer.gradient(model, batch_losses(x[:0], y[:0]), 0).values()])
                         for _ in range(400)])
    assert abs(float(draws.std()) - 2.0 * 0.1 / 4) < 0.005


def test_shared_helpers():
    model = nn.Linear(2, 2)
    params = dict(model.named_parameters())
    broadcast = {n: torch.ones_like(p) for n, p in params.items()}
    load_shared(params, broadcast)
    with torch.no_grad():
        model.bias.add_(2.0)
    delta = shared_delta(params, broadcast)
    assert torch.equal(delta["bias"], torch.full((2,), 2.0)) and torch.equal(delta["weight"], torch.zeros(2, 2))


def test_label_release_noise_and_distribution():
    labels = np.array([0, 0, 1, 2, 2, 2])
    exact = release_label_counts(labels, 4, 0.0, torch.Generator())
    assert exact.tolist() == [2.0, 1.0, 3.0, 0.0]
    noisy = torch.stack([release_label_counts(labels, 4, 3.0, torch.Generator().manual_seed(i)) for i in range(2000)])
    assert abs(float((noisy - exact).std()) - 3.0) < 0.15
    assert torch.allclose(label_distribution(torch.tensor([2.0, -1.0, 2.0])), torch.tensor([0.5, 0.0, 0.5]))
    assert torch.allclose(label_distribution(torch.tensor([-1.0, -2.0])), torch.tensor([0.5, 0.5]))


def test_accountant_kinds_are_recorded_and_survive_state_dicts():
    accountant = ClientAccountant("rdp", 1e-4)
    accountant.record(1.0, 1.0, 3, kind="dp-sgd")   # a full-batch DP-SGD step has q = 1 too
    accountant.record(5.0, 1.0, 1, kind="release")
    assert accountant.steps() == 3 and accountant.kinds == ["dp-sgd", "release"]
    restored = ClientAccountant.from_state_dict(accountant.state_dict())
    assert restored.kinds == accountant.kinds and restored.epsilon() == accountant.epsilon()
    legacy = ClientAccountant.from_state_dict({"accountant": "rdp", "delta": 1e-4,
                                               "history": [[1.0, 0.1, 4], [5.0, 1.0, 1]]})
    assert legacy.kinds == ["dp-sgd", "release"]
    with pytest.raises(ValueError, match="kind"):
        accountant.record(1.0, 0.5, 1, kind="other")
