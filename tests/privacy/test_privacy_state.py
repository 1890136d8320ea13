"""A client's privacy state: steps per round, the charge of a round, ε, and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.noise import SeededNoise
from fedsim.privacy.plan import plan_dp_sgd
from fedsim.privacy.state import PrivacyState
from privacy_testkit import opacus_epsilon


def _state(epsilon: float = 2.0, local_epochs: int = 3, seed: int = 0) -> PrivacyState:
    privacy = PrivacyConfig(epsilon=epsilon, delta=1e-5, max_records=100)
    plan = plan_dp_sgd(num_records=100, batch_size=16, rounds=4, local_epochs=local_epochs, privacy=privacy)
    return PrivacyState.fresh(privacy, plan, local_epochs, SeededNoise(torch.Generator().manual_seed(seed)))


def test_a_round_is_local_epochs_times_the_steps_per_epoch_and_is_charged_at_the_plan():
    state = _state()
    assert state.steps_per_round() == 3 * math.ceil(100 / 16)
    assert (4 + 1) * state.steps_per_round() == state.plan.total_steps  # what σ was calibrated for (1 reserved)
    charge = state.round_charge()
    assert charge == (state.plan.noise_multiplier, 16 / 100, state.steps_per_round())
    assert charge.steps == state.steps_per_round()
    assert _state(epsilon=math.inf).round_charge() is None
    no_dp_sgd = PrivacyState.fresh(PrivacyConfig(), None, 3, SeededNoise(torch.Generator()))
    assert no_dp_sgd.round_charge() is None and no_dp_sgd.steps_per_round() == 0


def test_epsilon_is_the_accountants_and_a_state_dict_restores_in_place():
    state = _state()
    sigma, q = state.plan.noise_multiplier, state.plan.sample_rate
    state.accountant.record(sigma, q, 7, kind="dp-sgd")
    assert state.epsilon() == pytest.approx(opacus_epsilon([(sigma, q, 7)], 1e-5, "rdp"), rel=1e-9)
    saved = state.state_dict()
    ahead = state.noise.gaussian((5,), 1.0)
    accountant = state.accountant
    state.accountant.record(sigma, q, 5, kind="dp-sgd")
    state.load_state_dict(saved)
    assert state.accountant is accountant and accountant.history == [(sigma, q, 7)]
    assert torch.equal(state.noise.gaussian((5,), 1.0), ahead)  # the noise stream continues where it was
    other = _state(seed=99)
    other.load_state_dict(saved)
    assert other.accountant.history == [(sigma, q, 7)] and torch.equal(other.noise.gaussian((5,), 1.0), ahead)
