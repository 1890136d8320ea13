"""Ghost clipping (per-record norms of linear layers from their inputs and output
gradients) against an independent per-record loop: every record's gradient computed
alone, flattened over all trained parameters, clipped to C and summed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.models.cgan import ConditionalGAN
from fedsim.models.conditional import OutputScaling
from fedsim.models.cvae import ConditionalVAE
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
def test_classifier_cross_entropy(clip_norm):
    torch.manual_seed(0)
    model = nn.Linear(7, 4)
    x, y = torch.randn(13, 7) * 3, torch.randint(0, 4, (13,))
    params = dict(model.named_parameters())
    ghost = linear_clipped_sum(model, params, lambda: nn.functional.cross_entropy(model(x), y, reduction="none"),
                               clip_norm)
    loop = per_record_loop(params, lambda j: nn.functional.cross_entropy(model(x[j:j + 1]), y[j:j + 1]), 13, clip_norm)
    assert_same(ghost, loop)


@pytest.mark.parametrize("clip_norm", [0.1, 1.5])
def test_conditional_vae_with_reparameterisation_noise(clip_norm):
    torch.manual_seed(1)
    model = ConditionalVAE(9, 3, [16, 16], 4, 0.1, OutputScaling())
    u, onehot = torch.randn(11, 9), nn.functional.one_hot(torch.randint(0, 3, (11,)), 3).float()
    eps = torch.randn(11, 4)
    params = dict(model.named_parameters())
    ghost = linear_clipped_sum(model, params, lambda: model(u, onehot, eps), clip_norm)
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
    with pytest.raises(ValueError, match="nn.Linear parameters only"):
        linear_clipped_sum(embedding, dict(embedding.named_parameters()),
                           lambda: embedding(torch.arange(4)).sum(1), 1.0)
    layer = nn.Linear(3, 3)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="called once"):  # weight sharing: the norm formula does not hold
        linear_clipped_sum(layer, dict(layer.named_parameters()), lambda: layer(layer(x)).sum(1), 1.0)
    with pytest.raises(ValueError, match="one loss per record"):
        linear_clipped_sum(layer, dict(layer.named_parameters()), lambda: layer(x).sum(), 1.0)
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="batch norm"):
        linear_clipped_sum(net, dict(net[0].named_parameters()), lambda: net(x).sum(1), 1.0)
