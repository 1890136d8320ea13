"""Ghost clipping (per-record norms of linear layers from their inputs and output
gradients; the sum by a second backward pass or by book-keeping) against an independent
per-record loop: every record's gradient computed alone, flattened over all trained
parameters, clipped to C and summed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.models.cgan import ConditionalGAN
from fedsim.models.conditional import OutputScaling
from fedsim.models.cvae import ConditionalVAE
from fedsim.models.hypernet import RowScaledLinear
from fedsim.privacy.ghost_clipping import linear_clipped_sum


def per_record_loop(parameters: dict, record_loss, batch_size: int, clip_norm: float) -> dict:
    """Σ_j clip(∇ℓ_j, C), one record at a time (the reference computation)."""
    names = list(parameters)
    total = {n: torch.zeros_like(parameters[n]) for n in names}
    for j in range(batch_size):
        grads = torch.autograd.grad(record_loss(j), [parameters[n] for n in names], allow_unused=True)
        grads = [torch.zeros_like(parameters[n]) if g is None else g for n, g in zip(names, grads)]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        factor = min(1.0, clip_norm / max(float(norm), 1e-12))
        for n, g in zip(names, grads):
            total[n] += factor * g
    return total


def assert_same(ghost: dict, loop: dict) -> None:
    assert ghost.keys() == loop.keys()
    for name in loop:
        torch.testing.assert_close(ghost[name], loop[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("clip_norm", [0.05, 1.0, 1e6])  # every record clipped, some, none
@pytest.mark.parametrize("bookkeeping", [False, True])
def test_classifier_cross_entropy(clip_norm, bookkeeping):
    torch.manual_seed(0)
    model = nn.Linear(7, 4)
    x, y = torch.randn(13, 7) * 3, torch.randint(0, 4, (13,))
    params = dict(model.named_parameters())
    ghost = linear_clipped_sum(model, params, lambda: nn.functional.cross_entropy(model(x), y, reduction="none"),
                               clip_norm, bookkeeping)
    loop = per_record_loop(params, lambda j: nn.functional.cross_entropy(model(x[j:j + 1]), y[j:j + 1]), 13, clip_norm)
    assert_same(ghost, loop)


@pytest.mark.parametrize("clip_norm", [0.1, 1.5])
@pytest.mark.parametrize("bookkeeping", [False, True])
def test_conditional_vae_with_reparameterisation_noise(clip_norm, bookkeeping):
    torch.manual_seed(1)
    model = ConditionalVAE(9, 3, [16, 16], 4, 0.1, OutputScaling())
    u, onehot = torch.randn(11, 9), nn.functional.one_hot(torch.randint(0, 3, (11,)), 3).float()
    eps = torch.randn(11, 4)
    params = dict(model.named_parameters())
    ghost = linear_clipped_sum(model, params, lambda: model(u, onehot, eps), clip_norm, bookkeeping)
    loop = per_record_loop(params, lambda j: model(u[j], onehot[j], eps[j]), 11, clip_norm)
    assert_same(ghost, loop)


def test_gan_discriminator_only_is_clipped():
    torch.manual_seed(2)
    model = ConditionalGAN(6, 3, 5, [8], [12, 10], OutputScaling())
    u, onehot = torch.randn(10, 6), nn.functional.one_hot(torch.randint(0, 3, (10,)), 3).float()
    params = {n: p for n, p in model.named_parameters() if n.startswith("discriminator.")}
    ghost = linear_clipped_sum(model, params, lambda: model(u, onehot), 0.2)
    loop = per_record_loop(params, lambda j: model(u[j], onehot[j]), 10, 0.2)
    assert_same(ghost, loop)
    norms = []
    for j in range(10):  # every record's contribution is within C: removing one moves the sum ≤ C
        without = linear_clipped_sum(model, params, lambda: model(torch.cat([u[:j], u[j + 1:]]),
                                                                  torch.cat([onehot[:j], onehot[j + 1:]])), 0.2)
        norms.append(torch.sqrt(sum((ghost[n] - without[n]).pow(2).sum() for n in params)))
    assert max(norms) <= 0.2 + 1e-5


def test_models_outside_the_preconditions_are_refused():
    embedding = nn.Embedding(5, 3)
    with pytest.raises(ValueError, match="nn.Linear parameters and per-record copies only"):
        linear_clipped_sum(embedding, dict(embedding.named_parameters()),
                           lambda: embedding(torch.arange(4)).sum(1), 1.0)
    layer = nn.Linear(3, 3)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="first dimension"):  # a call shared by every record
        linear_clipped_sum(layer, dict(layer.named_parameters()), lambda: layer(x).sum(1) + layer(x[0]).sum(), 1.0)
    with pytest.raises(ValueError, match="outside linear layers"):
        linear_clipped_sum(layer, dict(layer.named_parameters()),
                           lambda: (layer(x).sum(1), {"weight": layer.weight.expand(4, 3, 3)}), 1.0)
    tied = nn.ModuleDict({"a": nn.Linear(3, 3), "b": nn.Linear(3, 3)})
    tied["b"].weight = tied["a"].weight
    with pytest.raises(ValueError, match="ties weights"):  # the norm would miss the cross term
        linear_clipped_sum(tied, dict(tied.named_parameters()), lambda: tied["b"](tied["a"](x)).sum(1), 1.0)
    with pytest.raises(ValueError, match="used elsewhere too: \\['weight'\\]"):  # a path the norms do not see
        linear_clipped_sum(layer, dict(layer.named_parameters()), lambda: layer(x).sum(1) + (x @ layer.weight).sum(1),
                           1.0, True)
    code = nn.Parameter(torch.randn(3))

    def copy_and_whole():
        codes = code.expand(4, 3)
        return layer(x * codes).sum(1) + x @ code, {"code": codes}
    with pytest.raises(ValueError, match="used elsewhere too: \\['code'\\]"):
        linear_clipped_sum(layer, {**dict(layer.named_parameters()), "code": code}, copy_and_whole, 1.0)
    with pytest.raises(ValueError, match="one loss per record"):
        linear_clipped_sum(layer, dict(layer.named_parameters()), lambda: layer(x).sum(), 1.0)
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="batch norm"):
        linear_clipped_sum(net, dict(net[0].named_parameters()), lambda: net(x).sum(1), 1.0)


@pytest.mark.parametrize("clip_norm", [0.05, 0.5, 1e6])
@pytest.mark.parametrize("bookkeeping", [False, True])
def test_a_layer_reused_in_sequence_and_on_several_rows_per_record(clip_norm, bookkeeping):
    """Record j owns one row of the first call and T = 3 rows of the second, whose input is
    the first call's output (weight sharing): the Gram form of the norm."""
    torch.manual_seed(3)
    layer = nn.Linear(5, 5)
    x, extra = torch.randn(8, 5), torch.randn(8, 3, 5)

    def losses(xs, extras):
        hidden = torch.tanh(layer(xs))
        return (layer(extras + hidden[:, None, :]).pow(2).sum(dim=(1, 2))
                + torch.sin(hidden).sum(dim=1))

    params = dict(layer.named_parameters())
    ghost = linear_clipped_sum(layer, params, lambda: losses(x, extra), clip_norm, bookkeeping)
    loop = per_record_loop(params, lambda j: losses(x[j:j + 1], extra[j:j + 1]).sum(), 8, clip_norm)
    assert_same(ghost, loop)


@pytest.mark.parametrize("bookkeeping", [False, True])
def test_many_rows_through_a_small_layer_use_the_per_record_gradient(bookkeeping):
    """T² > fan_in · fan_out: the per-record (out, in) gradient, not the Gram matrices."""
    torch.manual_seed(4)
    layer = nn.Linear(2, 2)
    x = torch.randn(6, 7, 2)
    params = dict(layer.named_parameters())
    ghost = linear_clipped_sum(layer, params, lambda: torch.cos(layer(x)).sum(dim=(1, 2)), 0.3, bookkeeping)
    loop = per_record_loop(params, lambda j: torch.cos(layer(x[j])).sum(), 6, 0.3)
    assert_same(ghost, loop)


@pytest.mark.parametrize("keywords", [False, True])
@pytest.mark.parametrize("bookkeeping", [False, True])
def test_row_scaled_layer_and_a_per_record_copy(bookkeeping, keywords):
    """``s ⊙ (W a) + b + Δb`` with record-dependent scales generated from a vector that
    every record uses whole (FedHypeVAE's decoder and client code, in miniature)."""
    torch.manual_seed(5)
    layer, generator = RowScaledLinear(4, 3), nn.Linear(2, 6)
    code = nn.Parameter(torch.randn(2))
    model = nn.ModuleDict({"layer": layer, "generator": generator})
    x = torch.randn(7, 2, 4)

    def losses(xs, codes):
        scale, shift = generator(codes).split(3, dim=-1)
        if keywords:
            return layer(xs, scale=scale.exp()[:, None, :], shift=shift[:, None, :]).pow(2).sum(dim=(1, 2))
        return layer(xs, scale.exp()[:, None, :], shift[:, None, :]).pow(2).sum(dim=(1, 2))

    params = {**dict(model.named_parameters()), "code": code}
    def batch_losses():
        codes = code.expand(7, 2)  # the copy the losses use
        return losses(x, codes), {"code": codes}

    ghost = linear_clipped_sum(model, params, batch_losses, 0.4, bookkeeping)
    loop = per_record_loop(params, lambda j: losses(x[j:j + 1], code[None, :]).sum(), 7, 0.4)
    assert_same(ghost, loop)
