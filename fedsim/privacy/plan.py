"""A client's DP-SGD plan: sample rate, step count and calibrated noise.

The plan is fixed before training from public quantities only (the client's record
count n_i, which the protocol treats as public, the batch size, rounds and local
epochs), and calibrates σ for the number of steps the client *really* runs:

    q = B / n_i,   steps per epoch = ⌈n_i / B⌉,   T = rounds × local_epochs × steps per epoch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fedsim.privacy.calibration import calibrate_noise
from fedsim.privacy.config import PrivacyConfig


@dataclass(frozen=True)
class DPSGDPlan:
    """What one client's DP-SGD will do (all public)."""

    num_records: int
    sample_rate: float
    expected_batch_size: float
    steps_per_epoch: int
    total_steps: int
    noise_multiplier: float
    target_epsilon: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_dp_sgd(
    num_records: int,
    batch_size: int,
    rounds: int,
    local_epochs: int,
    privacy: PrivacyConfig,
    dp_sgd_share: float = 1.0,
) -> DPSGDPlan:
    """Calibrate a client's σ for ``rounds × local_epochs`` epochs of Poisson DP-SGD.

    ``dp_sgd_share`` is the share of ``privacy.epsilon`` that DP-SGD may spend (the
    rest is kept for a later release)."""
    if num_records <= 0:
        raise ValueError("a client needs at least one training record")
    sample_rate = min(1.0, batch_size / num_records)
    steps_per_epoch = max(1, math.ceil(num_records / batch_size))
    total_steps = rounds * local_epochs * steps_per_epoch
    target = privacy.epsilon * dp_sgd_share
    sigma = (
        calibrate_noise(target, privacy.delta, sample_rate, total_steps, privacy.accountant)
        if privacy.private and total_steps > 0
        else 0.0
    )
    return DPSGDPlan(
        num_records=num_records,
        sample_rate=sample_rate,
        expected_batch_size=sample_rate * num_records,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        noise_multiplier=sigma,
        target_epsilon=target,
    )
