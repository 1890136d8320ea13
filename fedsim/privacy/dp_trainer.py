"""The one DP-SGD trainer of every method (FedAvg/FedProx/FedLambda with ``private``,
DP-CVAE, DP-CGAN's discriminator, FedHypeVAE), in the shape of Opacus'
``DPOptimizer.pre_step``: clip → noise → scale → accountant hook → optimizer step.

For a client with ``n`` records, plan ``(q, σ, C)`` (:func:`fedsim.privacy.plan.plan_dp_sgd`:
with DP ``q = B/m`` for the public bound ``m ≥ n``, so that ``q·m = B``)
and trained parameters θ, one step (Abadi et al. 2016; the paper's Eq. 9, made sound
as in docs/design.md, "Privacy model") is

    B ~ Poisson(q) over the n records                                  (NoiseSource.poisson_batch)
    S = Σ_{j∈B} clip(∇_θ ℓ_j(θ), C)        joint clipping over θ       (a ClippedSum strategy)
    g̃ = ( S + N(0, σ² C² I) ) / (q·m)                                  (NoiseSource.gaussian)
    accountant ← (σ, q, 1)                  the subsampled Gaussian mechanism, kind "dp-sgd"
    g = g̃ + ∇_θ R(θ)                        R: record-free terms (weight decay, proximal
                                            term, Lipschitz penalty, fake-only GAN loss)
    θ ← optimizer(θ, g)                     post-processing of the Gaussian mechanism

* An empty batch (|B| = 0) still releases ``N(0, σ²C² I)/(q·n)``, and is accounted.
* The sum is divided by the *expected* batch size ``q·m`` of the plan, never by the realised |B|
  (data dependent): g̃ is a post-processing of the Gaussian mechanism on S.
* With ε = ∞ the gradient is the plain mean ``(1/|B|) Σ_j ∇ℓ_j`` (zero on an empty
  batch) and the accountant records σ = 0, so the client's ε reads ∞.
* A second, non-private parameter group (``outside_dp``) is trained on its own plain
  mean gradient, possibly of a different loss, in the same step: FedHypeVAE's ``paper``
  privacy mode (Eq. 8 on ψ_i, v_i without noise, Eq. 9 on Φ).  Its ε does not cover
  that group; the ledger says so.

:func:`record_dp_sgd_steps` is the accountant hook, the only place where DP-SGD steps
are recorded (the trainer after every step; fault recovery for rounds it must charge).
:meth:`DPTrainer.run_round` is a round: load the broadcast into the shared parameters,
run :meth:`~fedsim.privacy.state.PrivacyState.steps_per_round` local steps, return the
change of the shared parameters; it refuses to start a round that would take the
client beyond the steps its σ was calibrated for
(:meth:`~fedsim.privacy.state.PrivacyState.check_round_fits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from fedsim.privacy.clipped_sums import ClippedSum, RecordBatch
from fedsim.privacy.dp_sgd import Params, noisy_average
from fedsim.privacy.state import PrivacyState


@dataclass
class ParameterGroup:
    """Parameters trained by one gradient rule (:class:`~fedsim.privacy.clipped_sums.ClippedSum`)."""

    parameters: dict[str, nn.Parameter]
    gradient: ClippedSum


def record_dp_sgd_steps(privacy_state: PrivacyState, steps: int = 1) -> None:
    """The accountant hook: record ``steps`` DP-SGD steps ``(σ, q)`` of the client's plan
    (σ = 0 when ε = ∞, so that ε reads ∞)."""
    plan = privacy_state.plan
    if plan is None:
        raise ValueError("a client without a DP-SGD plan runs no DP-SGD steps")
    sigma = plan.noise_multiplier if privacy_state.private else 0.0
    privacy_state.accountant.record(sigma, plan.sample_rate, steps, kind="dp-sgd")


class DPTrainer:
    """DP-SGD on ``parameters`` (jointly clipped by ``clipped_sum``), optionally with a
    non-private group ``outside_dp``, stepped by ``optimizer`` (module docstring).

    ``optimizer`` must cover the parameters of both groups; a client may replace it
    between rounds (FedAvg resets its momentum every round).  ``num_records`` is the
    client's own record count n (Poisson batches are drawn over its records; default
    the plan's count)."""

    def __init__(self, parameters: Mapping[str, nn.Parameter], clipped_sum: ClippedSum,
                 optimizer: torch.optim.Optimizer, privacy_state: PrivacyState,
                 outside_dp: ParameterGroup | None = None, num_records: int | None = None) -> None:
        plan = privacy_state.sgd_plan()  # ValueError without a plan
        self.parameters = dict(parameters)
        self.clipped_sum = clipped_sum
        self.optimizer = optimizer
        self.privacy_state = privacy_state
        self.outside_dp = outside_dp
        self.num_records = plan.num_records if num_records is None else num_records
        if self.num_records > plan.num_records:
            raise ValueError(f"{self.num_records} records exceed the plan's bound {plan.num_records}")
        if outside_dp is not None and set(outside_dp.parameters) & set(self.parameters):
            raise ValueError("a parameter cannot be trained both inside and outside DP")

    def sample_batch(self) -> Tensor:
        """Indices of one Poisson batch of rate q over the client's n records (sorted; may be empty)."""
        return self.privacy_state.noise.poisson_batch(self.num_records, self.privacy_state.sgd_plan().sample_rate)

    def gradient(self, batch: RecordBatch) -> Params:
        """The privatized (ε = ∞: plain mean) gradient of the DP group, the plain mean
        gradient of the ``outside_dp`` group, and the step's accountant entry."""
        state, plan = self.privacy_state, self.privacy_state.sgd_plan()
        empty = batch.size == 0
        if state.private:
            clip_norm = state.privacy.clip_norm
            summed = (_zeros(self.parameters) if empty
                      else self.clipped_sum.clipped_sum(self.parameters, batch, clip_norm))
            gradient = noisy_average(summed, clip_norm, plan.noise_multiplier, plan.expected_batch_size,
                                     state.noise)
        else:
            gradient = _zeros(self.parameters) if empty else self.clipped_sum.mean_gradient(self.parameters, batch)
        if self.outside_dp is not None:
            group = self.outside_dp
            gradient.update(_zeros(group.parameters) if empty
                            else group.gradient.mean_gradient(group.parameters, batch))
        record_dp_sgd_steps(state, 1)
        return gradient

    def step(self, batch: RecordBatch, penalty: Callable[[], Tensor] | None = None) -> None:
        """One step: :meth:`gradient` + ∇(record-free ``penalty``), then the optimizer."""
        gradient = self.gradient(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if penalty is not None:
            penalty().backward()
        trained = self.parameters if self.outside_dp is None else {**self.parameters,
                                                                   **self.outside_dp.parameters}
        with torch.no_grad():
            for name, parameter in trained.items():
                if parameter.grad is None:
                    parameter.grad = gradient[name].clone()
                else:
                    parameter.grad.add_(gradient[name])
        self.optimizer.step()

    def run_round(self, shared: Mapping[str, nn.Parameter], broadcast: Mapping[str, Tensor],
                  local_step: Callable[[], None]) -> dict[str, Tensor]:
        """One local round: ``shared ← broadcast``, ``steps_per_round()`` calls of
        ``local_step`` (each one :meth:`step`, plus whatever else the method does), and
        the change ``shared − broadcast`` (the content of a ClientUpdate)."""
        self.privacy_state.check_round_fits()
        load_shared(shared, broadcast)
        for _ in range(self.privacy_state.steps_per_round()):
            local_step()
        return shared_delta(shared, broadcast)


def load_shared(parameters: Mapping[str, nn.Parameter], broadcast: Mapping[str, Tensor]) -> None:
    """Overwrite a client's copy of the shared parameters with the server's broadcast."""
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(broadcast[name])


def shared_delta(parameters: Mapping[str, nn.Parameter], broadcast: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``Φ_local − Φ`` for every shared parameter (the content of a ClientUpdate)."""
    return {name: (p.detach() - broadcast[name]).clone() for name, p in parameters.items()}


def _zeros(parameters: Mapping[str, nn.Parameter]) -> Params:
    return {name: torch.zeros_like(p) for name, p in parameters.items()}
