"""A client's DP-SGD plan: sample rate, step count and calibrated noise.

The plan is fixed before training from public quantities only.  With DP the record
count it uses is the declared public bound ``m = --privacy.max-records``, never the
client's own n_i (under add/remove neighbours n_i itself reveals membership):

    q = B / m,   steps per epoch = ⌈m / B⌉,
    T = (rounds + reserved_rounds) × local_epochs × steps per epoch,

and the noisy sum is divided by the expected batch ``q·m = B``.  ``reserved_rounds``
(``--privacy.reserved-rounds``) are rounds the calibration keeps for rounds charged
again after a lost worker or an interrupted run; a client never runs more DP-SGD steps
than ``T`` (:meth:`~fedsim.privacy.state.PrivacyState.check_round_fits`).  Without DP
(ε = ∞) nothing is hidden and the plan uses n_i itself.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fedsim.privacy.config import PrivacyConfig


@dataclass(frozen=True)
class DPSGDPlan:
    """What one client's DP-SGD will do (all public)."""

    num_records: int
    """The record count the plan is built for: the public bound ``max_records`` with DP, n_i without."""
    sample_rate: float
    expected_batch_size: float
    steps_per_epoch: int
    total_steps: int
    """Every DP-SGD step the calibration allows, reserved rounds included."""
    noise_multiplier: float
    target_epsilon: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def planning_records(num_records: int, privacy: PrivacyConfig) -> int:
    """The record count DP-SGD is planned for: ``max_records`` with DP (public), n_i without."""
    return privacy.max_records if privacy.private else num_records


def plan_dp_sgd(
    num_records: int,
    batch_size: int,
    rounds: int,
    local_epochs: int,
    privacy: PrivacyConfig,
    dp_sgd_share: float = 1.0,
) -> DPSGDPlan:
    """Calibrate a client's σ for ``(rounds + reserved_rounds) × local_epochs`` epochs of
    Poisson DP-SGD over ``planning_records`` records (module docstring).

    ``num_records`` is the client's n_i; with DP it is not read (the plan of two
    neighbouring datasets is the same).  ``dp_sgd_share`` is the share of
    ``privacy.epsilon`` that DP-SGD may spend (the rest is kept for a later release)."""
    if num_records <= 0:
        raise ValueError("a client needs at least one training record")
    records = planning_records(num_records, privacy)
    sample_rate = min(1.0, batch_size / records)
    steps_per_epoch = max(1, math.ceil(records / batch_size))
    reserved = privacy.reserved_rounds if privacy.private else 0
    total_steps = (rounds + reserved) * local_epochs * steps_per_epoch
    target = privacy.epsilon * dp_sgd_share
    sigma = 0.0
    if privacy.private and total_steps > 0:
        # imported here: calibration needs Opacus, which a run without DP never loads
        from fedsim.privacy.calibration import calibrate_noise

        sigma = calibrate_noise(target, privacy.delta, sample_rate, total_steps, privacy.accountant)
    return DPSGDPlan(
        num_records=records,
        sample_rate=sample_rate,
        expected_batch_size=sample_rate * records,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        noise_multiplier=sigma,
        target_epsilon=target,
    )


def no_dp_sgd_plan(num_records: int, privacy: PrivacyConfig) -> DPSGDPlan:
    """The plan of a client that runs no DP-SGD (zero steps, σ = 0): its ledger's DP-SGD
    columns and fault recovery's charge read it (``dp-stats``, FedHypeVAE ``stats-only``)."""
    return DPSGDPlan(num_records=planning_records(num_records, privacy), sample_rate=0.0, expected_batch_size=0.0,
                     steps_per_epoch=0, total_steps=0, noise_multiplier=0.0, target_epsilon=0.0)


def record_rank(x: np.ndarray, y: np.ndarray, seed: int, client_id: int) -> np.ndarray:
    """A rank in [0, 2⁶⁴) for every record: a keyed BLAKE2b hash of the record's own bytes
    (embedding and label), keyed by the run seed and the client.  A record's rank does
    not depend on any other record, so adding or removing one record leaves every
    other record's rank unchanged."""
    key = f"fedsim-max-records/{seed}/{client_id}".encode()[:64]
    x, y = np.ascontiguousarray(x), np.asarray(y)
    ranks = [int.from_bytes(hashlib.blake2b(x[j].tobytes() + int(y[j]).to_bytes(8, "little", signed=True),
                                            digest_size=8, key=key).digest(), "little")
             for j in range(len(y))]
    return np.asarray(ranks, dtype=np.uint64)


def kept_records(x: np.ndarray, y: np.ndarray, privacy: PrivacyConfig, seed: int, client_id: int) -> np.ndarray:
    """Indices (sorted) of the train records ``(x, y)`` a client trains and releases
    statistics on.

    Without DP, or with at most ``max_records`` records, all of them.  Otherwise the
    ``max_records`` records of lowest :func:`record_rank` (ties by position): removing a
    record that is not kept changes nothing, and removing a kept one brings in the
    next-ranked record (one replacement; see ``PrivacyConfig.max_records``)."""
    if not privacy.private or len(y) <= privacy.max_records:
        return np.arange(len(y))
    order = np.argsort(record_rank(x, y, seed, client_id), kind="stable")
    return np.sort(order[: privacy.max_records])
