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

from fedsim.errors import UserError
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


class PrivacyBudgetExhausted(UserError):
    """A client was asked to run DP-SGD beyond the steps its σ was calibrated for (rounds
    charged again after a lost worker or an interrupted run, beyond
    ``--privacy.reserved-rounds``): the run stops instead of ending above the target ε."""


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

    def check_round_fits(self) -> None:
        """Raise :class:`PrivacyBudgetExhausted` when one more local round would take the
        client beyond the plan's ``total_steps`` (the steps σ was calibrated for, reserved
        rounds included): the composed ε would then exceed the target.  Every DP-SGD entry
        has the plan's (σ, q), so staying within ``total_steps`` keeps ε ≤ the target."""
        if self.plan is None or not self.private:
            return
        done, next_round = self.accountant.dp_sgd_steps(), self.steps_per_round()
        if done + next_round > self.plan.total_steps:
            raise PrivacyBudgetExhausted(
                f"a client's privacy budget is spent: it has run {done} DP-SGD steps and one more round "
                f"({next_round} steps) exceeds the {self.plan.total_steps} steps its noise was calibrated for "
                f"(epsilon={self.privacy.epsilon}): a client runs at most --training.rounds plus "
                f"--privacy.reserved-rounds (now {self.privacy.reserved_rounds}) rounds, counting rounds charged "
                "again after a lost worker or --resume; raise --privacy.reserved-rounds and run again.")

    def check_release_fits(self) -> None:
        """Raise :class:`PrivacyBudgetExhausted` (instead of failing inside the
        calibration) when DP-SGD already ran beyond its plan, so that no budget is left
        for a release calibrated to the rest of ε."""
        if self.plan is None or not self.private:
            return
        done = self.accountant.dp_sgd_steps()
        if done > self.plan.total_steps:
            raise PrivacyBudgetExhausted(
                f"a client's privacy budget is spent before its statistics release: it has run {done} "
                f"DP-SGD steps, more than the {self.plan.total_steps} its noise was calibrated for "
                f"(epsilon={self.privacy.epsilon}); raise --privacy.reserved-rounds "
                f"(now {self.privacy.reserved_rounds}) and run again.")

    def public_sample_count(self, exact_count: int, dp_count: float | None = None) -> float:
        """The sample count a client may put in its :class:`~fedsim.algorithms.base.ClientUpdate`
        (Eq. 10's weights).  Without DP: its exact n_i.  With DP (n_i is hidden under
        add/remove neighbours): its DP count ``dp_count`` (the sum of its released noisy
        class counts; post-processing) clamped to ``[1, max_records]``, or, for a method
        that releases no count before training, the public bound ``max_records`` itself
        (equal weights)."""
        if not self.private:
            return float(exact_count)
        bound = float(self.privacy.max_records)
        if dp_count is None:
            return bound
        return float(min(bound, max(1.0, float(dp_count))))

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
