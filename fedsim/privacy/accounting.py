"""Privacy accounting on top of Opacus' accountants.

Every client owns one :class:`ClientAccountant`.  It records each mechanism the
client runs as an Opacus history entry ``(noise_multiplier, sample_rate, steps)``:

* a DP-SGD step with Poisson rate ``q`` and noise multiplier ``σ`` (noise std / clip
  norm) is the subsampled Gaussian mechanism ``(σ, q, 1)``;
* the release of class statistics is one Gaussian mechanism without subsampling,
  ``(std / sensitivity, 1.0, 1)``.

The reported ε is the accountant's ε for the whole, mixed history, so it composes
both mechanisms (RDP: Mironov 2017 / Mironov et al. 2019; PRV: Gopi et al. 2021).
It is Opacus' ε bit for bit, computed by :mod:`fedsim.privacy.opacus_epsilon` without
the RDP orders that cannot attain it.

Noise calibration lives in :mod:`fedsim.privacy.calibration`; ``calibrate_noise`` and
``calibrate_release_noise`` stay importable from here for the client modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal


AccountantName = Literal["rdp", "prv"]
MechanismKind = Literal["dp-sgd", "release"]
ACCOUNTANTS = ("rdp", "prv")


def epsilon_of_history(
    history: list[tuple[float, float, int]], delta: float, accountant: AccountantName
) -> float:
    """ε(δ) of a list of ``(noise_multiplier, sample_rate, steps)`` mechanisms: what a
    fresh Opacus ``RDPAccountant`` / ``PRVAccountant`` with that history reports."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; valid: 'rdp', 'prv'")
    entries = [(float(s), float(q), int(t)) for s, q, t in history if t > 0]
    if not entries:
        return 0.0
    if any(sigma == 0.0 for sigma, _, _ in entries):
        return math.inf
    # imported at the first noisy mechanism: Opacus (with SciPy) costs seconds of CPU that
    # the start-up of a client actor, or a run without DP, does not need
    from fedsim.privacy.opacus_epsilon import prv_epsilon, rdp_epsilon

    if accountant == "rdp":
        return rdp_epsilon(entries, delta)
    return prv_epsilon(entries, delta)


def __getattr__(name: str) -> Any:
    """``calibrate_noise`` / ``calibrate_release_noise`` from their own module (lazy:
    :mod:`fedsim.privacy.calibration` imports this one)."""
    if name in ("calibrate_noise", "calibrate_release_noise"):
        from fedsim.privacy import calibration

        return getattr(calibration, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class ClientAccountant:
    """One client's record of every mechanism it ran, and the ε they spend together.

    ``history`` holds ``(noise_multiplier, sample_rate, steps)`` entries in the
    order they happened; consecutive identical entries of the same kind are merged.
    ``kinds`` says, per entry, whether it is a DP-SGD step (``"dp-sgd"``) or a
    one-off release (``"release"``); a DP-SGD step of a client whose batch covers all
    its records has q = 1 too, so the kind is recorded rather than read off q."""

    accountant: AccountantName
    delta: float
    history: list[tuple[float, float, int]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.kinds) != len(self.history):  # older state: infer the kind from q
            self.kinds = [_inferred_kind(q) for _, q, _ in self.history]

    def record(self, noise_multiplier: float, sample_rate: float, steps: int = 1,
               kind: MechanismKind | None = None) -> None:
        """Record ``steps`` runs of a (subsampled) Gaussian mechanism of ``kind``
        (default: ``"release"`` when ``sample_rate`` is 1, else ``"dp-sgd"``)."""
        if steps <= 0:
            return
        kind = kind or _inferred_kind(sample_rate)
        if kind not in ("dp-sgd", "release"):
            raise ValueError(f"unknown mechanism kind {kind!r}; valid: 'dp-sgd', 'release'")
        entry = (float(noise_multiplier), float(sample_rate))
        if self.history and self.history[-1][:2] == entry and self.kinds[-1] == kind:
            self.history[-1] = (*entry, self.history[-1][2] + steps)
        else:
            self.history.append((*entry, steps))
            self.kinds.append(kind)

    def _entries(self, kind: str) -> list[tuple[float, float, int]]:
        return [entry for entry, k in zip(self.history, self.kinds) if k == kind]

    def dp_sgd_steps(self) -> int:
        """Number of recorded DP-SGD steps."""
        return sum(t for _, _, t in self._entries("dp-sgd"))

    def mechanism_runs(self) -> int:
        """Number of recorded mechanism runs of every kind (DP-SGD steps and releases)."""
        return sum(t for _, _, t in self.history)

    def epsilon(self, history: list[tuple[float, float, int]] | None = None) -> float:
        """ε at this accountant's δ for the recorded (or the given) history."""
        return epsilon_of_history(self.history if history is None else history, self.delta,
                                  self.accountant)

    def epsilon_of_dp_sgd(self) -> float:
        """ε of the DP-SGD steps alone."""
        return self.epsilon(self._entries("dp-sgd"))

    def epsilon_of_release(self) -> float:
        """ε of the one-off releases alone (statistics, label counts)."""
        return self.epsilon(self._entries("release"))

    def state_dict(self) -> dict[str, Any]:
        return {"accountant": self.accountant, "delta": self.delta,
                "history": [list(entry) for entry in self.history], "kinds": list(self.kinds)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "ClientAccountant":
        return cls(state["accountant"], state["delta"],
                   [(float(s), float(q), int(t)) for s, q, t in state["history"]],
                   list(state.get("kinds", [])))


def _inferred_kind(sample_rate: float) -> MechanismKind:
    return "release" if sample_rate >= 1.0 else "dp-sgd"
