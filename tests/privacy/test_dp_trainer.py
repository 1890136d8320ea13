"""The one DP-SGD trainer: its step against per-record loops, both clipped-sum strategies
against a per-record loop, the accountant hook (one (σ, q) entry per step), noise on
empty batches, the ε = ∞ path, a non-private parameter group and the round helpers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from fedsim.privacy.clipped_sums import GhostClippedSum, RecordBatch, VmapClippedSum
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_trainer import DPTrainer, ParameterGroup, load_shared, shared_delta
from fedsim.privacy.noise import SeededNoise
from fedsim.privacy.state import PrivacyState
from privacy_testkit import (
    fixed_plan,
    functional_record_loss,
    joint_norm,
    loop_gradients,
    make_trainer,
    opacus_epsilon,
    tiny_model,
    tiny_records,
)


def _linear_setup(private: bool, noise: float = 0.0, records: int = 8):
    """A linear classifier (as FedAvg's) with ghost clipping, q = 1."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.randn(records, 3)
    y = torch.arange(records) % 2
    losses = GhostClippedSum(model, lambda xb, yb: nn.functional.cross_entropy(model(xb), yb, reduction="none"))
    trainer = make_trainer(model, losses, fixed_plan(records, 1.0, noise), clip_norm=0.1, private=private)
    return model, x, y, trainer


def _mlp_setup(records: int = 9, seed: int = 0):
    """A small MLP with per-record losses, one record far out (so that some are clipped)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x = torch.randn(records, 4, generator=g)
    x[-1] *= 30.0
    y = torch.arange(records) % 3
    return model, x, y


def _mlp_record_loss(model):
    def record_loss(p, x, y):
        return nn.functional.cross_entropy(functional_call(model, p, (x[None],)), y[None])
    return record_loss


def _mlp_loop(model, x, y) -> list[dict[str, torch.Tensor]]:
    """Independent reference: one autograd.grad per record."""
    names, params = zip(*model.named_parameters())
    return [dict(zip(names, torch.autograd.grad(nn.functional.cross_entropy(model(x[j:j + 1]), y[j:j + 1]), params)))
            for j in range(len(x))]


def _loop_clipped_sum(reference: list[dict], clip: float) -> dict[str, torch.Tensor]:
    return {n: sum(r[n] * min(1.0, clip / joint_norm(r)) for r in reference) for n in reference[0]}


def _assert_close(actual: dict, expected: dict, atol=1e-5, rtol=1e-4):
    assert set(actual) == set(expected)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=atol, rtol=rtol, msg=name)


# --- the step ------------------------------------------------------------------------------
def test_private_step_is_the_clipped_mean_plus_record_free_terms():
    model, x, y, trainer = _linear_setup(private=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = {n: torch.zeros_like(p) for n, p in before.items()}
    for i in range(len(x)):  # per-record loop, joint clipping to C = 0.1
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(x[i])[None], y[i][None]),
                                    list(model.parameters()))
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        for (name, _), g in zip(model.named_parameters(), grads):
            expected[name] += g * min(1.0, 0.1 / float(norm)) / len(x)
    penalty_weight = 0.3
    trainer.step(RecordBatch((x, y)), penalty=lambda: penalty_weight * model.weight.pow(2).sum())
    expected["weight"] += 2 * penalty_weight * before["weight"]
    for name, p in model.named_parameters():
        torch.testing.assert_close(before[name] - p.detach(), expected[name], rtol=1e-4, atol=1e-6)
    accountant = trainer.privacy_state.accountant
    assert accountant.history == [(0.0, 1.0, 1)] and accountant.kinds == ["dp-sgd"]


def test_non_private_step_is_plain_sgd_and_reads_infinite_epsilon():
    model, x, y, trainer = _linear_setup(private=False)
    before = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    trainer.step(RecordBatch((x, y)))
    for b, g, p in zip(before, grads, model.parameters()):
        torch.testing.assert_close(b - g, p.detach())
    assert trainer.privacy_state.accountant.history == [(0.0, 1.0, 1)]  # σ = 0 recorded
    assert math.isinf(trainer.privacy_state.epsilon())


def test_noise_has_std_sigma_c_over_expected_batch():
    model, x, y, trainer = _linear_setup(private=True, noise=2.0, records=4)
    draws = torch.stack([torch.cat([g.flatten() for g in trainer.gradient(RecordBatch((x[:0], y[:0]))).values()])
                         for _ in range(400)])
    assert abs(float(draws.std()) - 2.0 * 0.1 / 4) < 0.005


# --- the clipped-sum strategies ------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["vmap", "ghost"])
def test_clipped_sum_strategies_equal_a_per_record_loop(strategy):
    model, x, y = _mlp_setup()
    reference = _mlp_loop(model, x, y)
    norms = sorted(joint_norm(r) for r in reference)
    clip = norms[len(norms) // 2]  # some records clipped, some not
    assert norms[0] < clip < norms[-1]
    if strategy == "vmap":
        losses = VmapClippedSum(_mlp_record_loss(model))
    else:
        losses = GhostClippedSum(model, lambda xb, yb: nn.functional.cross_entropy(model(xb), yb, reduction="none"))
    params = dict(model.named_parameters())
    _assert_close(losses.clipped_sum(params, RecordBatch((x, y)), clip), _loop_clipped_sum(reference, clip))
    expected_mean = {n: torch.stack([r[n] for r in reference]).mean(0) for n in reference[0]}
    _assert_close(losses.mean_gradient(params, RecordBatch((x, y))), expected_mean)


def test_vmap_strategy_through_the_hypernetwork_equals_a_per_record_loop():
    model = tiny_model(1.0)
    records, shared = tiny_records(7, outlier=20.0)
    reference = loop_gradients(model, records, shared)
    clip = sorted(joint_norm(r) for r in reference)[3]
    losses = VmapClippedSum(functional_record_loss(model))
    result = losses.clipped_sum(dict(model.named_parameters()), RecordBatch(records, shared), clip)
    _assert_close(result, _loop_clipped_sum(reference, clip))


def test_trainer_gradient_is_the_noisy_clipped_sum_over_the_expected_batch():
    """σ > 0: the trainer's gradient minus the loop's clipped sum / (q·n) is exactly the
    noise the same seeded source draws, parameter by parameter in order."""
    model, x, y = _mlp_setup()
    clip, sigma, n, q = 0.5, 1.7, 20, 0.4
    trainer = make_trainer(model, VmapClippedSum(_mlp_record_loss(model)), fixed_plan(n, q, sigma), clip, seed=4)
    gradient = trainer.gradient(RecordBatch((x, y)))
    expected_sum = _loop_clipped_sum(_mlp_loop(model, x, y), clip)
    noise = SeededNoise(torch.Generator().manual_seed(4))
    for name, p in model.named_parameters():
        expected = (expected_sum[name] + noise.gaussian(p.shape, sigma * clip)) / (q * n)
        torch.testing.assert_close(gradient[name], expected, rtol=1e-4, atol=1e-6)


# --- accounting ----------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["vmap", "ghost"])
def test_the_accountant_hook_records_one_entry_per_step(strategy):
    model, x, y = _mlp_setup()
    sigma, q = 1.1, 0.3
    losses = (VmapClippedSum(_mlp_record_loss(model)) if strategy == "vmap"
              else GhostClippedSum(model, lambda xb, yb: nn.functional.cross_entropy(model(xb), yb, reduction="none")))
    trainer = make_trainer(model, losses, fixed_plan(len(x), q, sigma), clip_norm=1.0, lr=0.1)
    accountant = trainer.privacy_state.accountant
    for step in range(1, 6):
        batch = trainer.sample_batch()
        trainer.step(RecordBatch((x[batch], y[batch])))
        assert accountant.history == [(sigma, q, step)] and accountant.kinds == ["dp-sgd"]
        assert accountant.dp_sgd_steps() == accountant.mechanism_runs() == step
    assert trainer.privacy_state.epsilon() == pytest.approx(opacus_epsilon([(sigma, q, 5)], 1e-4, "rdp"), rel=1e-9)


def test_an_empty_batch_step_adds_noise_and_is_accounted():
    model, x, y = _mlp_setup()
    sigma, clip, n, q = 0.9, 1.0, 10, 0.5
    trainer = make_trainer(model, VmapClippedSum(_mlp_record_loss(model)), fixed_plan(n, q, sigma), clip, seed=6)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.step(RecordBatch((x[:0], y[:0])))
    noise = SeededNoise(torch.Generator().manual_seed(6))
    for name, p in model.named_parameters():  # SGD, lr = 1: θ moved by exactly −noise/(q·n)
        moved = before[name] - p.detach()
        assert float(moved.abs().min()) > 0
        torch.testing.assert_close(moved, noise.gaussian(p.shape, sigma * clip) / (q * n))
    assert trainer.privacy_state.accountant.history == [(sigma, q, 1)]


# --- a non-private group (FedHypeVAE's paper mode) ------------------------------------------
def test_outside_dp_group_gets_the_plain_mean_of_its_own_loss_without_noise():
    model, x, y = _mlp_setup()
    first = {n: p for n, p in model.named_parameters() if n.startswith("0.")}
    second = {n: p for n, p in model.named_parameters() if n.startswith("2.")}
    sigma, clip, n, q = 1.3, 0.5, 18, 0.5

    def loss_over(trained, fixed, scale=1.0):
        def record_loss(p, xj, yj):
            constants = {name: value.detach() for name, value in fixed.items()}
            return scale * _mlp_record_loss(model)({**constants, **p}, xj, yj)
        return record_loss

    state = PrivacyState.fresh(PrivacyConfig(epsilon=1.0, clip_norm=clip), fixed_plan(n, q, sigma), 1,
                               SeededNoise(torch.Generator().manual_seed(2)))
    outside = ParameterGroup(second, VmapClippedSum(loss_over(second, first, scale=3.0)))
    trainer = DPTrainer(first, VmapClippedSum(loss_over(first, second)),
                        torch.optim.SGD(model.parameters(), lr=1.0), state, outside_dp=outside)
    gradient = trainer.gradient(RecordBatch((x, y)))
    reference = _mlp_loop(model, x, y)
    for name in second:  # unclipped, unnoised mean of the group's own (3×) loss
        expected = 3.0 * torch.stack([r[name] for r in reference]).mean(0)
        torch.testing.assert_close(gradient[name], expected, rtol=1e-4, atol=1e-6)
    noise = SeededNoise(torch.Generator().manual_seed(2))
    clipped = _loop_clipped_sum([{k: r[k] for k in first} for r in reference], clip)
    for name, p in first.items():  # the DP group: clipped over its own parameters, noised
        torch.testing.assert_close(gradient[name], (clipped[name] + noise.gaussian(p.shape, sigma * clip)) / (q * n),
                                   rtol=1e-4, atol=1e-6)
    assert state.accountant.history == [(sigma, q, 1)]
    with pytest.raises(ValueError, match="both"):
        DPTrainer(first, VmapClippedSum(loss_over(first, second)), trainer.optimizer, state,
                  outside_dp=ParameterGroup(first, outside.gradient))


# --- rounds --------------------------------------------------------------------------------
def test_a_round_runs_steps_per_round_steps_and_returns_the_change_of_the_shared_parameters():
    model, x, y = _mlp_setup()
    plan = fixed_plan(len(x), 0.5, 1.0)
    trainer = make_trainer(model, VmapClippedSum(_mlp_record_loss(model)), plan, clip_norm=1.0, lr=0.1)
    trainer.privacy_state.local_epochs = 3
    shared = {n: p for n, p in model.named_parameters() if n.startswith("2.")}
    broadcast = {n: torch.full_like(p, 0.25) for n, p in shared.items()}
    calls = []

    def local_step():
        calls.append(1)
        batch = trainer.sample_batch()
        trainer.step(RecordBatch((x[batch], y[batch])))

    delta = trainer.run_round(shared, broadcast, local_step)
    assert len(calls) == trainer.privacy_state.steps_per_round() == 3 * plan.steps_per_epoch
    for name, p in shared.items():
        torch.testing.assert_close(delta[name], p.detach() - broadcast[name])
    assert trainer.privacy_state.accountant.dp_sgd_steps() == 3


def test_shared_helpers():
    model = nn.Linear(2, 2)
    params = dict(model.named_parameters())
    broadcast = {n: torch.ones_like(p) for n, p in params.items()}
    load_shared(params, broadcast)
    with torch.no_grad():
        model.bias.add_(2.0)
    delta = shared_delta(params, broadcast)
    assert torch.equal(delta["bias"], torch.full((2,), 2.0)) and torch.equal(delta["weight"], torch.zeros(2, 2))
