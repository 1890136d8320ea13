"""Per-sample gradients, joint clipping and the neighbouring-dataset bound of DP-SGD,
on the real FedHypeVAE record loss, against per-record ``torch.autograd.grad`` loops."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from fedsim.models.losses import multi_kernel
from fedsim.privacy.dp_sgd import (
    clip_factors,
    clipped_sum,
    mean_gradient,
    per_sample_gradients,
    per_sample_norms,
)
from privacy_testkit import (
    functional_record_loss,
    joint_norm,
    loop_gradients,
    tiny_model,
    tiny_records,
)


def _params(model):
    return {n: p.detach() for n, p in model.named_parameters()}


def _assert_close(actual: dict, expected: dict, atol=1e-5, rtol=1e-4):
    assert set(actual) == set(expected)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=atol, rtol=rtol, msg=name)


@pytest.mark.parametrize("lambda_mmd", [0.0, 1.0])
def test_per_sample_gradients_equal_a_per_record_autograd_loop(lambda_mmd):
    model = tiny_model(lambda_mmd)
    records, shared = tiny_records(7)
    per_sample = per_sample_gradients(functional_record_loss(model), _params(model), records, shared)
    reference = loop_gradients(model, records, shared)

    names = [n for n, _ in model.named_parameters()]
    assert set(per_sample) == set(names)  # every trained parameter: ψ_i, v_i and Φ
    for name, p in model.named_parameters():
        assert per_sample[name].shape == (7, *p.shape)
    for j, expected in enumerate(reference):
        _assert_close({n: g[j] for n, g in per_sample.items()}, expected)
    # the MMD term really contributes (else "MMD on" would test nothing new)
    if lambda_mmd > 0:
        without = per_sample_gradients(functional_record_loss(tiny_model(0.0)), _params(model), records, shared)
        gap = max(float((per_sample[n] - without[n]).abs().max()) for n in names)
        assert gap > 1e-3
    # the private state gets non-zero per-record gradients (it is trained on data)
    assert float(per_sample["client_code"].abs().sum()) > 0
    assert float(per_sample["encoder.net.0.weight"].abs().sum()) > 0


def test_per_sample_gradients_of_a_single_record_and_of_the_batch_mean():
    model = tiny_model(1.0)
    records, shared = tiny_records(5)
    params = _params(model)
    loss = functional_record_loss(model)
    one = per_sample_gradients(loss, params, tuple(r[2:3] for r in records), shared)
    _assert_close({n: g[0] for n, g in one.items()}, loop_gradients(model, records, shared)[2])
    # mean_gradient (the ε = ∞ path) is the mean of the per-record loop
    reference = loop_gradients(model, records, shared)
    expected = {n: torch.stack([r[n] for r in reference]).mean(0) for n in reference[0]}
    _assert_close(mean_gradient(loss, params, records, shared), expected)


@pytest.mark.parametrize("lambda_mmd", [0.0, 1.0])
def test_joint_clipping_bounds_every_record_and_the_sum_matches_a_loop(lambda_mmd):
    model = tiny_model(lambda_mmd)
    records, shared = tiny_records(9, outlier=25.0)
    grads = per_sample_gradients(functional_record_loss(model), _params(model), records, shared)
    reference = loop_gradients(model, records, shared)
    loop_norms = torch.tensor([joint_norm(g) for g in reference])
    torch.testing.assert_close(per_sample_norms(grads).double(), loop_norms.double(), rtol=1e-4, atol=1e-6)

    clip = float(loop_norms.median())  # some records are clipped, some are not
    factors = clip_factors(per_sample_norms(grads), clip)
    clipped = [{n: g[j] * factors[j] for n, g in grads.items()} for j in range(9)]
    clipped_norms = torch.tensor([joint_norm(g) for g in clipped])
    assert bool((clipped_norms <= clip * (1 + 1e-5)).all())
    over, under = loop_norms > clip, loop_norms < clip
    assert over.any() and under.any()
    torch.testing.assert_close(clipped_norms[over], torch.full_like(clipped_norms[over], clip), rtol=1e-5, atol=0)
    torch.testing.assert_close(clipped_norms[under], loop_norms[under], rtol=1e-5, atol=1e-7)

    # independent: clip each loop gradient by hand, then add them up
    expected = {n: sum(r[n] * min(1.0, clip / joint_norm(r)) for r in reference) for n in reference[0]}
    _assert_close(clipped_sum(grads, clip), expected, atol=1e-5, rtol=1e-4)


def test_clip_factor_of_a_zero_gradient_is_one_and_finite():
    factors = clip_factors(torch.tensor([0.0, 0.5, 2.0, 4.0]), 1.0)
    torch.testing.assert_close(factors, torch.tensor([1.0, 1.0, 0.5, 0.25]))


def _neighbour_gaps(record_loss, params, records, shared, clip):
    """Joint L2 norm of clipped_sum(D) − clipped_sum(D \\ {j}) for every j (same
    per-record noise for the records that stay, same shared noise)."""
    n = records[0].shape[0]
    full = clipped_sum(per_sample_gradients(record_loss, params, records, shared), clip)
    gaps = []
    for j in range(n):
        keep = torch.tensor([i for i in range(n) if i != j])
        part = clipped_sum(per_sample_gradients(record_loss, params, tuple(r[keep] for r in records),
                                                shared), clip)
        gaps.append({name: full[name] - part[name] for name in full})
    return gaps


@pytest.mark.parametrize("lambda_mmd", [1.0, 10.0])
def test_removing_one_record_moves_the_clipped_sum_by_at_most_C(lambda_mmd):
    model = tiny_model(lambda_mmd)
    records, shared = tiny_records(10, outlier=50.0)
    reference = loop_gradients(model, records, shared)
    norms = [joint_norm(g) for g in reference]
    clip = 0.5 * min(norms)  # every record clipped: the bound is tight for each one
    assert norms[-1] > 10 * clip  # the outlier's raw gradient is far beyond C

    gaps = _neighbour_gaps(functional_record_loss(model), _params(model), records, shared, clip)
    for j, gap in enumerate(gaps):
        assert joint_norm(gap) <= clip * (1 + 1e-4), f"record {j}: {joint_norm(gap) / clip:.4f}·C"
        # and the change is exactly record j's own clipped gradient (no coupling at all)
        expected = {n: g * min(1.0, clip / norms[j]) for n, g in reference[j].items()}
        _assert_close(gap, expected, atol=1e-5, rtol=1e-3)
    assert joint_norm(gaps[-1]) == pytest.approx(clip, rel=1e-4)


class _BatchLabelMMD(nn.Module):
    """A *coupled* record loss (negative control): the MMD's synthetic samples use the
    labels of the whole batch, so each record's gradient depends on the others."""

    def __init__(self, model) -> None:
        super().__init__()
        self.m = model

    def forward(self, x, onehot, eps_z, batch_onehot, noise):
        modulation, context = self.m.generated(self.m.client_code)
        synthetic = self.m.sample(modulation, context, batch_onehot, noise)
        return multi_kernel(synthetic, synthetic).mean() - 2.0 * multi_kernel(x[None], synthetic).mean()


def test_the_neighbour_check_detects_a_coupled_loss():
    """Control: the same check fails for a loss that couples records (docs/design.md, "Privacy model": an
    in-batch MMD moved the clipped sum by more than C), so its passing above means something."""
    coupled = _BatchLabelMMD(tiny_model(0.0))
    (x, onehot, eps_z), _ = tiny_records(10, outlier=20.0)
    noise = torch.randn(10, 4, generator=torch.Generator().manual_seed(5))
    params = {n: p.detach() for n, p in coupled.named_parameters()}

    def record_loss(p, x, onehot, eps_z, batch_onehot, noise):
        return functional_call(coupled, p, (x, onehot, eps_z, batch_onehot, noise))

    full = per_sample_gradients(record_loss, params, (x, onehot, eps_z), (onehot, noise))
    clip = 0.5 * float(per_sample_norms(full).min())
    total = clipped_sum(full, clip)
    worst = 0.0
    for j in range(10):
        keep = torch.tensor([i for i in range(10) if i != j])
        part = clipped_sum(per_sample_gradients(record_loss, params, (x[keep], onehot[keep], eps_z[keep]),
                                                (onehot[keep], noise[keep])), clip)
        worst = max(worst, joint_norm({n: total[n] - part[n] for n in total}) / clip)
    assert worst > 1.05


@settings(derandomize=True, database=None, max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=2), min_size=1, max_size=3),
    records=st.integers(1, 6),
    log_scale=st.floats(-3, 3),
    clip=st.floats(0.05, 5.0),
    seed=st.integers(0, 2**16),
)
def test_clipping_properties_hold_for_arbitrary_gradient_shapes(shapes, records, log_scale, clip, seed):
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(log_scale * torch.randn(records, generator=g, dtype=torch.float64))
    grads = {f"p{i}": torch.randn(records, *shape, generator=g, dtype=torch.float64)
             * scales.reshape(-1, *[1] * len(shape)) for i, shape in enumerate(shapes)}
    per_record = [{n: v[j] for n, v in grads.items()} for j in range(records)]
    factors = clip_factors(per_sample_norms(grads), clip)
    for j, record in enumerate(per_record):
        norm = joint_norm(record)
        assert joint_norm({n: v * factors[j] for n, v in record.items()}) <= clip * (1 + 1e-9)
        assert float(factors[j]) == pytest.approx(min(1.0, clip / norm), rel=1e-9)
    expected = {n: sum(r[n] * min(1.0, clip / joint_norm(r)) for r in per_record) for n in grads}
    _assert_close(clipped_sum(grads, clip), expected, atol=1e-12, rtol=1e-9)
    assert joint_norm(clipped_sum(grads, clip)) <= records * clip * (1 + 1e-9)
