"""The local (DP-)SGD loop shared by the baselines: one Poisson batch, one privatized
gradient, one optimizer step, one accountant entry.

For a client with ``n`` records and plan ``(q, σ, C)`` (:func:`fedsim.privacy.plan.plan_dp_sgd`),
a step is (Abadi et al. 2016, with the fixes of DESIGN.md):

    B ~ Poisson(q) over the n records
    g̃ = ( Σ_{j∈B} clip(∇_θ ℓ_j(θ), C) + N(0, σ² C² I) ) / (q·n)          (joint clipping)
    g = g̃ + ∇_θ R(θ)                        R: record-free terms (weight decay, proximal term)
    θ ← optimizer(θ, g)                    post-processing of the Gaussian mechanism

and records ``(σ, q, 1)`` in the client's accountant.  With ε = ∞ the gradient is the
plain mean over the batch, and the accountant records σ = 0, so the client's ε reads ∞.
The per-record loss ``ℓ_j`` must depend on record ``j`` only (plus data-independent
inputs): :func:`fedsim.privacy.dp_sgd.privatized_gradient` computes it per record with
``torch.func`` and clips it.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from fedsim.privacy.accounting import ClientAccountant
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_sgd import RecordLoss, mean_gradient, privatized_gradient
from fedsim.privacy.plan import DPSGDPlan
from fedsim.privacy.sampling import poisson_sample


class LocalDPSGD:
    """DP-SGD on a fixed set of a client's parameters (see module docstring).

    ``parameters`` maps names (as ``record_loss`` expects them) to the ``nn.Parameter``
    objects that ``optimizer`` updates; every parameter the loss is differentiated for
    is clipped jointly."""

    def __init__(self, parameters: Mapping[str, nn.Parameter], optimizer: torch.optim.Optimizer,
                 privacy: PrivacyConfig, plan: DPSGDPlan, accountant: ClientAccountant,
                 generator: torch.Generator) -> None:
        self.parameters = dict(parameters)
        self.optimizer = optimizer
        self.privacy, self.plan, self.accountant, self.generator = privacy, plan, accountant, generator

    def steps_per_round(self, local_epochs: int) -> int:
        """``local_epochs × ⌈n/B⌉``: the steps the plan was calibrated for, per round."""
        return local_epochs * self.plan.steps_per_epoch

    def sample_batch(self) -> Tensor:
        """Indices of one Poisson batch (rate q; may be empty)."""
        return poisson_sample(self.plan.num_records, self.plan.sample_rate, self.generator)

    def gradient(self, record_loss: RecordLoss, records: tuple[Tensor, ...], shared: tuple = ()) -> dict[str, Tensor]:
        """The privatized (or, with ε = ∞, plain mean) gradient, accounted."""
        params = {name: p.detach() for name, p in self.parameters.items()}
        if self.privacy.private:
            gradient = privatized_gradient(record_loss, params, records, shared, self.privacy.clip_norm,
                                           self.plan.noise_multiplier, self.plan.expected_batch_size,
                                           self.generator)
            self.accountant.record(self.plan.noise_multiplier, self.plan.sample_rate, 1, kind="dp-sgd")
        else:
            gradient = mean_gradient(record_loss, params, records, shared)
            self.accountant.record(0.0, self.plan.sample_rate, 1, kind="dp-sgd")  # ε = ∞
        return gradient

    def step(self, record_loss: RecordLoss, records: tuple[Tensor, ...], shared: tuple = (),
             penalty: Callable[[], Tensor] | None = None) -> None:
        """One step: privatized gradient + ∇(record-free ``penalty``), then the optimizer."""
        gradient = self.gradient(record_loss, records, shared)
        self.optimizer.zero_grad(set_to_none=True)
        if penalty is not None:
            penalty().backward()
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                if parameter.grad is None:
                    parameter.grad = gradient[name].clone()
                else:
                    parameter.grad.add_(gradient[name])
        self.optimizer.step()


def load_shared(parameters: Mapping[str, nn.Parameter], broadcast: Mapping[str, Tensor]) -> None:
    """Overwrite a client's copy of the shared parameters with the server's broadcast."""
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(broadcast[name])


def shared_delta(parameters: Mapping[str, nn.Parameter], broadcast: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``Φ_local − Φ`` for every shared parameter (the content of a ClientUpdate)."""
    return {name: (p.detach() - broadcast[name]).clone() for name, p in parameters.items()}
