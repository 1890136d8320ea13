"""Helpers of the privacy tests: a tiny FedHypeVAE model whose per-record loss is the real
one (``FedHypeVAEClient``'s ``functional_call``), a DP trainer around it, and independent
references."""

from __future__ import annotations

import dataclasses
import warnings

import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch.func import functional_call

from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.models.fedhypevae import FedHypeVAEModel
from fedsim.models.init import seeded
from fedsim.privacy.clipped_sums import ClippedSum, VmapClippedSum
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_trainer import DPTrainer
from fedsim.privacy.noise import SeededNoise
from fedsim.privacy.plan import DPSGDPlan
from fedsim.privacy.state import PrivacyState

DIM, CLASSES = 12, 3
TINY = FedHypeVAEConfig(hidden_dim=16, latent_dim=4, code_dim=4, hyper_hidden=8, label_dim=4,
                        mmd_samples=5, training="dp-sgd", observation_variance=False)


def tiny_model(lambda_mmd: float = 1.0, seed: int = 0) -> FedHypeVAEModel:
    """A small FedHypeVAE client model (deterministic initialisation)."""
    config = dataclasses.replace(TINY, lambda_mmd=lambda_mmd)
    with seeded(seed, "test-tiny-model"):
        return FedHypeVAEModel(DIM, CLASSES, config, generator=torch.Generator().manual_seed(seed))


def tiny_records(n: int, seed: int = 1, outlier: float | None = None):
    """``(x, onehot, eps_z)`` for ``n`` records and the shared ``mmd_noise``; with
    ``outlier`` the last record's embedding is scaled by that factor."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    if outlier is not None:
        x[-1] *= outlier
    labels = torch.arange(n) % CLASSES
    onehot = torch.nn.functional.one_hot(labels, CLASSES).float()
    eps_z = torch.randn(n, TINY.latent_dim, generator=g)
    mmd_noise = torch.randn(TINY.mmd_samples, TINY.latent_dim, generator=g)
    return (x, onehot, eps_z), (mmd_noise,)


def functional_record_loss(model: FedHypeVAEModel):
    """The record loss exactly as ``FedHypeVAEClient`` builds it (strict mode)."""
    def record_loss(p, x, onehot, eps_z, mmd_noise):
        return functional_call(model, p, (x, onehot, eps_z, mmd_noise))
    return record_loss


def loop_gradients(model: FedHypeVAEModel, records, shared) -> list[dict[str, torch.Tensor]]:
    """Independent reference: one ``torch.autograd.grad`` per record, on the module itself."""
    names, params = zip(*model.named_parameters())
    out = []
    for j in range(records[0].shape[0]):
        loss = model(*(r[j] for r in records), *shared)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out.append({n: torch.zeros_like(p) if g is None else g.detach()
                    for n, p, g in zip(names, params, grads)})
    return out


def joint_norm(grads: dict[str, torch.Tensor]) -> float:
    """L2 norm of one gradient over all parameters, in float64."""
    return float(torch.sqrt(sum(g.double().pow(2).sum() for g in grads.values())))


def opacus_epsilon(history, delta, accountant):
    """ε of ``history`` ``[(σ, q, steps), ...]`` from a brand-new Opacus RDP or PRV
    accountant: the independent reference of the accounting tests."""
    fresh = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    fresh.history = [(float(s), float(q), int(t)) for s, q, t in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fresh.get_epsilon(delta))


def fixed_plan(num_records: int, sample_rate: float, noise_multiplier: float) -> DPSGDPlan:
    """A plan with the given n, q and σ (no calibration): one step per epoch, no step limit."""
    return DPSGDPlan(num_records=num_records, sample_rate=sample_rate,
                     expected_batch_size=sample_rate * num_records, steps_per_epoch=1, total_steps=10**9,
                     noise_multiplier=noise_multiplier, target_epsilon=1.0)


def make_trainer(model: torch.nn.Module, clipped_sum: ClippedSum, plan: DPSGDPlan, clip_norm: float,
                 private: bool = True, seed: int = 0, lr: float = 1.0, **trainer_options) -> DPTrainer:
    """A :class:`DPTrainer` on every parameter of ``model`` (plain SGD, seeded noise)."""
    privacy = PrivacyConfig(epsilon=1.0 if private else float("inf"), clip_norm=clip_norm)
    parameters = dict(model.named_parameters())
    state = PrivacyState.fresh(privacy, plan, 1, SeededNoise(torch.Generator().manual_seed(seed)))
    return DPTrainer(parameters, clipped_sum, torch.optim.SGD(parameters.values(), lr=lr), state,
                     **trainer_options)


def vmap_trainer(model: FedHypeVAEModel, plan: DPSGDPlan, clip_norm: float, seed: int = 0) -> DPTrainer:
    """The DP trainer as a strict-mode FedHypeVAE client builds it (per-record gradients by torch.func)."""
    return make_trainer(model, VmapClippedSum(functional_record_loss(model)), plan, clip_norm, seed=seed)
