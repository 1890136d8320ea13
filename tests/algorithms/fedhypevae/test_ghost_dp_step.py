"""FedHypeVAE's whole-model DP-SGD step by ghost clipping (``--fedhypevae.training dp-sgd``):
the clipped sum of the batched losses (by a second backward pass, and by book-keeping as
runs compute it) against an independent per-record loop (each
record's loss alone, its gradient by autograd, flattened over the trained parameters,
clipped to C and summed), for every parameter (``strict``), for Φ alone (``paper``),
and for the ablations; and a client's round against the same round by per-record
gradients (``torch.func``), on the same seeded noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from fedsim.algorithms.fedhypevae import FedHypeVAEClient, FedHypeVAEConfig
from fedsim.algorithms.fedhypevae.client import _without_mmd
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.federation import ClientData
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.models.fedhypevae import FedHypeVAEModel, is_shared
from fedsim.privacy.clipped_sums import GhostClippedSum, RecordBatch, VmapClippedSum
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_trainer import ParameterGroup

DIM, CLASSES, LATENT, MMD = 10, 4, 3, 3
CONFIG = FedHypeVAEConfig(hidden_dim=12, latent_dim=LATENT, code_dim=4, hyper_hidden=8, label_dim=5,
                          mmd_samples=MMD)


def per_record_loop(model: FedHypeVAEModel, parameters: dict[str, nn.Parameter], batch: RecordBatch,
                    clip_norm: float) -> dict[str, torch.Tensor]:
    """Σ_j clip(∇ℓ_j, C): record j's loss alone (unbatched), its gradient, its joint norm."""
    x, onehot, eps_z = batch.records
    mmd_noise, = batch.shared
    names = list(parameters)
    total = {n: torch.zeros_like(parameters[n]) for n in names}
    for j in range(len(x)):
        loss = model.record_loss(x[j], onehot[j], eps_z[j], mmd_noise)
        grads = torch.autograd.grad(loss, [parameters[n] for n in names], allow_unused=True)
        grads = [torch.zeros_like(parameters[n]) if g is None else g for n, g in zip(names, grads)]
        norm = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        factor = min(1.0, clip_norm / max(norm, 1e-12))
        for n, g in zip(names, grads):
            total[n] += factor * g
    return total


def batch(size: int, seed: int) -> RecordBatch:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, DIM, generator=generator) * 2
    onehot = nn.functional.one_hot(torch.randint(0, CLASSES, (size,), generator=generator), CLASSES).float()
    return RecordBatch((x, onehot, torch.randn(size, LATENT, generator=generator)),
                       (torch.randn(MMD, LATENT, generator=generator),))


@pytest.mark.parametrize("config", [CONFIG, dataclasses.replace(CONFIG, lambda_mmd=0.0),
                                    dataclasses.replace(CONFIG, hypernetwork=False)],
                         ids=["default", "no-mmd", "no-hypernetwork"])
@pytest.mark.parametrize("group", ["all", "shared"])
@pytest.mark.parametrize("clip_norm", [0.02, 0.5, 1e6])  # every record clipped, some, none
@pytest.mark.parametrize("bookkeeping", [False, True])
def test_ghost_clipped_sum_is_the_per_record_loop(config, group, clip_norm, bookkeeping):
    torch.manual_seed(0)
    model = FedHypeVAEModel(DIM, CLASSES, config)
    with torch.no_grad():
        model.client_code.normal_()  # a nonzero code, so that every path carries gradient
    parameters = {n: p for n, p in model.named_parameters() if group == "all" or is_shared(n)}
    records = batch(9, seed=1)
    ghost = GhostClippedSum(model, model.batch_losses, bookkeeping=bookkeeping).clipped_sum(parameters, records,
                                                                                           clip_norm)
    loop = per_record_loop(model, parameters, records, clip_norm)
    assert ghost.keys() == loop.keys()
    for name in loop:
        torch.testing.assert_close(ghost[name], loop[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bookkeeping", [False, True])
def test_each_record_moves_the_sum_by_at_most_the_clip_norm(bookkeeping):
    torch.manual_seed(1)
    model = FedHypeVAEModel(DIM, CLASSES, CONFIG)
    parameters = dict(model.named_parameters())
    strategy = GhostClippedSum(model, model.batch_losses, bookkeeping=bookkeeping)
    records = batch(8, seed=2)
    full = strategy.clipped_sum(parameters, records, 0.1)
    for j in range(8):
        keep = [i for i in range(8) if i != j]
        without = strategy.clipped_sum(parameters, RecordBatch(tuple(t[keep] for t in records.records),
                                                               records.shared), 0.1)
        moved = torch.sqrt(sum((full[n] - without[n]).pow(2).sum() for n in parameters))
        assert float(moved) <= 0.1 + 1e-6


def client(mode: str, epsilon: float) -> FedHypeVAEClient:
    rng = np.random.default_rng(0)
    y = (np.arange(80) % CLASSES).astype(np.int64)
    x = (2.0 * np.eye(DIM)[y] + rng.normal(size=(80, DIM))).astype(np.float32)
    data = ClientData(0, x, y, x[:8], y[:8], x[8:16], y[8:16], CLASSES)
    privacy = PrivacyConfig(epsilon=epsilon, privacy_mode=mode, clip_norm=0.5, max_records=80,
                            reproducible_noise=True)
    return FedHypeVAEClient(data, FederationSpec(1, CLASSES, DIM), dataclasses.replace(CONFIG, training="dp-sgd"),
                            privacy, TrainingConfig(rounds=2, batch_size=16), EvaluationConfig(), seed=3)


@pytest.mark.parametrize("mode,epsilon", [("strict", 2.0), ("paper", 2.0), ("strict", float("inf"))])
def test_a_round_by_ghost_clipping_is_the_round_by_per_record_gradients(mode, epsilon):
    ghost, vmap = client(mode, epsilon), client(mode, epsilon)
    assert isinstance(ghost.trainer.clipped_sum, GhostClippedSum)
    local = {n: p for n, p in vmap.model.named_parameters() if not is_shared(n)}
    vmap.trainer.clipped_sum = VmapClippedSum(vmap._record_loss(fixed=None if mode == "strict" else local))
    if mode == "paper":  # ψ_i and v_i outside DP on the ELBO (Eq. 8): per-record losses by torch.func too
        shared = {n: p for n, p in vmap.model.named_parameters() if is_shared(n)}

        def elbo(p, x, onehot, eps_z, mmd_noise):
            with _without_mmd(vmap.model):
                constants = {n: v.detach() for n, v in shared.items()}
                return functional_call(vmap.model, {**constants, **p}, (x, onehot, eps_z, mmd_noise))
        vmap.trainer.outside_dp = ParameterGroup(local, VmapClippedSum(elbo))
    broadcast = {n: p.detach().clone() for n, p in ghost.model.named_parameters() if is_shared(n)}
    ghost_update, _ = ghost.local_round(broadcast, 0)
    vmap_update, _ = vmap.local_round(broadcast, 0)
    for name, value in vmap_update.delta.items():
        torch.testing.assert_close(ghost_update.delta[name], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ghost.model.client_code, vmap.model.client_code, rtol=1e-4, atol=1e-5)
