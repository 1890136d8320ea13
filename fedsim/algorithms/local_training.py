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
The baselines' models are MLPs, so the clipped sum comes from
:func:`fedsim.privacy.ghost_clipping.linear_clipped_sum` (per-record norms from layer
inputs and output gradients, then one backward of ``Σ_j c_j ℓ_j``) without
materialising per-record gradients.  A step takes ``batch_losses()``: the batch's
per-record losses ``(ℓ_j)_{j∈B}``, shape ``(|B|,)``, each depending on record ``j``
only (plus data-independent inputs such as the reparameterisation noise).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from fedsim.privacy.accounting import ClientAccountant
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_sgd import noisy_average
from fedsim.privacy.ghost_clipping import linear_clipped_sum
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

    def gradient(self, model: nn.Module, batch_losses: Callable[[], Tensor], batch_size: int) -> dict[str, Tensor]:
        """The privatized (or, with ε = ∞, plain mean) gradient of the trained parameters
        for a batch of ``batch_size`` records, accounted."""
        params = self.parameters
        if self.privacy.private:
            if batch_size == 0:  # an empty Poisson batch still releases noise
                clipped = {name: torch.zeros_like(p) for name, p in params.items()}
            else:
                clipped = linear_clipped_sum(model, params, batch_losses, self.privacy.clip_norm)
            gradient = noisy_average(clipped, self.privacy.clip_norm, self.plan.noise_multiplier,
                                     self.plan.expected_batch_size, self.generator)
            self.accountant.record(self.plan.noise_multiplier, self.plan.sample_rate, 1, kind="dp-sgd")
        else:
            if batch_size == 0:
                gradient = {name: torch.zeros_like(p) for name, p in params.items()}
            else:
                names = list(params)
                grads = torch.autograd.grad(batch_losses().mean(), [params[n] for n in names], allow_unused=True)
                gradient = {n: torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, grads)}
            self.accountant.record(0.0, self.plan.sample_rate, 1, kind="dp-sgd")  # ε = ∞
        return gradient

    def step(self, model: nn.Module, batch_losses: Callable[[], Tensor], batch_size: int,
             penalty: Callable[[], Tensor] | None = None) -> None:
        """One step: privatized gradient + ∇(record-free ``penalty``), then the optimizer."""
        gradient = self.gradient(model, batch_losses, batch_size)
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
