"""One client's privacy state: what the runtime may ask about a client's privacy.

A :class:`PrivacyState` holds, for one client,

* the :class:`~fedsim.privacy.config.PrivacyConfig` it runs under (ε = ∞: no DP);
* its :class:`~fedsim.privacy.plan.DPSGDPlan` ``(n, q, σ, steps per epoch)``, or None for
  a method without DP-SGD;
* its :class:`~fedsim.privacy.accounting.ClientAccountant` (every mechanism it ran);
* ``local_epochs``, so that it alone knows how many DP-SGD steps a round is:
  ``T_round = local_epochs × ⌈n/B⌉`` (:meth:`PrivacyState.steps_per_round`);
* the :class:`~fedsim.privacy.noise.NoiseSource` of its DP-SGD (Poisson batches, noise).

The client's :class:`~fedsim.privacy.dp_trainer.DPTrainer` runs DP-SGD with it and
records each step in its accountant; the runtime reads ε (:meth:`PrivacyState.epsilon`),
checkpoints it (:meth:`PrivacyState.state_dict`) and, after a lost worker, charges the
rounds that were started but not confirmed (:meth:`PrivacyState.round_charge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from fedsim.privacy.accounting import ClientAccountant
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.noise import NoiseSource
from fedsim.privacy.plan import DPSGDPlan


class RoundCharge(NamedTuple):
    """The accountant entry of one full local round: ``steps`` subsampled Gaussian
    steps of noise multiplier σ at Poisson rate q."""

    noise_multiplier: float
    sample_rate: float
    steps: int


@dataclass
class PrivacyState:
    """One client's privacy configuration, DP-SGD plan, accountant and noise (module docstring)."""

    privacy: PrivacyConfig
    plan: DPSGDPlan | None
    accountant: ClientAccountant
    local_epochs: int
    noise: NoiseSource

    @classmethod
    def fresh(cls, privacy: PrivacyConfig, plan: DPSGDPlan | None, local_epochs: int,
              noise: NoiseSource) -> "PrivacyState":
        """The state of a client that has run nothing yet (an empty accountant)."""
        return cls(privacy, plan, ClientAccountant(privacy.accountant, privacy.delta), local_epochs, noise)

    def sgd_plan(self) -> DPSGDPlan:
        """The DP-SGD plan; ValueError for a client without DP-SGD."""
        if self.plan is None:
            raise ValueError("DP-SGD needs a plan (sample rate, noise multiplier, steps per epoch)")
        return self.plan

    @property
    def private(self) -> bool:
        """False when ε = ∞ (no clipping, no noise; ε reads ∞)."""
        return self.privacy.private

    def epsilon(self) -> float:
        """ε at δ of everything recorded so far (DP-SGD and releases composed)."""
        return self.accountant.epsilon()

    def steps_per_round(self) -> int:
        """``local_epochs × ⌈n/B⌉``: the DP-SGD steps of one local round, as the plan was
        calibrated for (0 without DP-SGD)."""
        if self.plan is None:
            return 0
        return self.local_epochs * self.plan.steps_per_epoch

    def round_charge(self) -> RoundCharge | None:
        """``(σ, q, steps)`` of one full local round; None without DP (ε = ∞) or without
        DP-SGD."""
        if self.plan is None or not self.private:
            return None
        return RoundCharge(self.plan.noise_multiplier, self.plan.sample_rate, self.steps_per_round())

    def state_dict(self) -> dict[str, Any]:
        return {"accountant": self.accountant.state_dict(), "noise": self.noise.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the accountant (in place: holders of the object see the restored
        history) and the noise stream."""
        restored = ClientAccountant.from_state_dict(state["accountant"])
        self.accountant.accountant, self.accountant.delta = restored.accountant, restored.delta
        self.accountant.history[:] = restored.history
        self.accountant.kinds[:] = restored.kinds
        self.noise.load_state_dict(state["noise"])
