"""Privacy accounting on top of Opacus' accountants.

Every client owns one :class:`ClientAccountant`.  It records each mechanism the
client runs as an Opacus history entry ``(noise_multiplier, sample_rate, steps)``:

* a DP-SGD step with Poisson rate ``q`` and noise multiplier ``σ`` (noise std / clip
  norm) is the subsampled Gaussian mechanism ``(σ, q, 1)``;
* the release of class statistics is one Gaussian mechanism without subsampling,
  ``(std / sensitivity, 1.0, 1)``.

The reported ε is the accountant's ε for the whole, mixed history, so it composes
both mechanisms (RDP: Mironov 2017 / Mironov et al. 2019; PRV: Gopi et al. 2021).

Calibration (:func:`calibrate_noise`) asks Opacus' ``get_noise_multiplier`` for the
σ that spends ``target_epsilon`` over the number of steps the client *really* runs.
Both are pure functions of their arguments and cached (the RDP of one step per
``(σ, q)``, calibrations per argument tuple): a table of many runs repeats them.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from opacus.accountants import IAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier

AccountantName = Literal["rdp", "prv"]
MechanismKind = Literal["dp-sgd", "release"]


def _new_opacus_accountant(name: AccountantName) -> IAccountant:
    if name == "rdp":
        return RDPAccountant()
    if name == "prv":
        return PRVAccountant()
    raise ValueError(f"unknown accountant {name!r}; valid: 'rdp', 'prv'")


def epsilon_of_history(
    history: list[tuple[float, float, int]], delta: float, accountant: AccountantName
) -> float:
    """ε(δ) of a list of ``(noise_multiplier, sample_rate, steps)`` mechanisms."""
    entries = [entry for entry in history if entry[2] > 0]
    if not entries:
        return 0.0
    if any(sigma == 0.0 for sigma, _, _ in entries):
        return math.inf
    if accountant == "rdp":  # same arithmetic as Opacus' RDPAccountant, per-step RDP cached
        rdp = sum([int(t) * _rdp_of_one_step(float(s), float(q)) for s, q, t in entries])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "optimal order is the largest alpha"
            epsilon, _ = rdp_analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp,
                                                       delta=delta)
        return float(epsilon)
    opacus_accountant = _new_opacus_accountant(accountant)
    opacus_accountant.history = [(float(s), float(q), int(t)) for s, q, t in entries]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RDP's "optimal order is the largest alpha"
        return float(opacus_accountant.get_epsilon(delta))


@functools.lru_cache(maxsize=4096)
def _rdp_of_one_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """RDP at Opacus' default orders of one subsampled Gaussian step (Mironov et al.
    2019); T identical steps compose to T times this.  Cached: a client's history
    repeats one (σ, q) pair, and ε is asked for after every round."""
    rdp = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1,
                                   orders=RDPAccountant.DEFAULT_ALPHAS)
    rdp.setflags(write=False)
    return rdp


@functools.lru_cache(maxsize=1024)
def calibrate_noise(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: AccountantName,
) -> float:
    """Smallest noise multiplier σ (Opacus' search) such that ``steps`` Poisson-subsampled
    Gaussian steps at rate ``sample_rate`` spend at most ``target_epsilon`` at ``delta``.

    ``target_epsilon = inf`` returns 0 (no noise)."""
    if math.isinf(target_epsilon):
        return 0.0
    if target_epsilon <= 0:
        raise ValueError(f"target epsilon must be > 0, got {target_epsilon}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=0.005,
            )
        )


def calibrate_release_noise(
    history: list[tuple[float, float, int]],
    target_epsilon: float,
    delta: float,
    accountant: AccountantName,
    tolerance: float = 1e-3,
) -> float:
    """Smallest noise multiplier σ_s of one extra Gaussian mechanism (q = 1) such that
    the composition of ``history`` and that mechanism spends at most ``target_epsilon``.

    Bisection on σ_s; the returned value is always on the safe side (ε ≤ target)."""
    if math.isinf(target_epsilon):
        return 0.0
    if epsilon_of_history(history, delta, accountant) >= target_epsilon:
        raise ValueError(
            "the DP-SGD history already spends the whole budget; "
            "lower the share of ε given to DP-SGD"
        )

    def spent(sigma: float) -> float:
        return epsilon_of_history([*history, (sigma, 1.0, 1)], delta, accountant)

    low, high = 1e-2, 1.0
    while spent(high) > target_epsilon:
        low, high = high, high * 2.0
        if high > 1e6:
            raise ValueError("could not calibrate the statistics release noise")
    while high - low > tolerance * high:
        middle = 0.5 * (low + high)
        if spent(middle) > target_epsilon:
            low = middle
        else:
            high = middle
    return high


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

    def state_dict(self) -> dict:
        return {"accountant": self.accountant, "delta": self.delta,
                "history": [list(entry) for entry in self.history], "kinds": list(self.kinds)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ClientAccountant":
        return cls(state["accountant"], state["delta"],
                   [(float(s), float(q), int(t)) for s, q, t in state["history"]],
                   list(state.get("kinds", [])))


def _inferred_kind(sample_rate: float) -> str:
    return "release" if sample_rate >= 1.0 else "dp-sgd"
