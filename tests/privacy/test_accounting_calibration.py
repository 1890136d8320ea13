"""Noise calibration and ε accounting, re-checked with fresh Opacus accountants (and, for
the q = 1 statistics release, with the exact ε of the Gaussian mechanism)."""

from __future__ import annotations

import math

import pytest

from fedsim.privacy.accounting import (
    ClientAccountant,
    calibrate_noise,
    calibrate_release_noise,
    epsilon_of_history,
)
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.plan import plan_dp_sgd
from privacy_testkit import opacus_epsilon


def gaussian_mechanism_epsilon(sigma: float, delta: float) -> float:
    """Exact ε(δ) of one Gaussian mechanism with noise multiplier σ (Balle & Wang 2018):
    δ(ε) = Φ(1/(2σ) − εσ) − e^ε Φ(−1/(2σ) − εσ), solved for ε by bisection."""
    def phi(t):
        return 0.5 * math.erfc(-t / math.sqrt(2))

    def delta_of(eps):
        return phi(0.5 / sigma - eps * sigma) - math.exp(eps) * phi(-0.5 / sigma - eps * sigma)

    low, high = 0.0, 50.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if delta_of(mid) > delta else (low, mid)
    return high


CASES = [  # (ε, δ, q, steps, accountant)
    (1.0, 1e-5, 0.01, 1000, "rdp"),
    (4.0, 1e-4, 0.2, 30, "rdp"),
    (0.5, 1e-4, 0.3, 10, "rdp"),
    (1.0, 1e-4, 0.1, 50, "prv"),
    (8.0, 1e-5, 0.05, 200, "prv"),
]


@pytest.mark.parametrize("epsilon,delta,q,steps,accountant", CASES)
def test_calibrated_sigma_spends_at_most_and_nearly_the_target(epsilon, delta, q, steps, accountant):
    sigma = calibrate_noise(epsilon, delta, q, steps, accountant)
    spent = opacus_epsilon([(sigma, q, steps)], delta, accountant)
    assert spent <= epsilon
    assert spent >= 0.98 * epsilon
    # it is (nearly) the smallest such σ: 3 % less noise overspends
    assert opacus_epsilon([(0.97 * sigma, q, steps)], delta, accountant) > epsilon
    # our own ε arithmetic agrees with Opacus' accountant
    assert epsilon_of_history([(sigma, q, steps)], delta, accountant) == pytest.approx(spent, rel=1e-9)


def test_calibration_edge_cases():
    assert calibrate_noise(math.inf, 1e-5, 0.1, 10, "rdp") == 0.0
    with pytest.raises(ValueError):
        calibrate_noise(0.0, 1e-5, 0.1, 10, "rdp")
    with pytest.raises(ValueError, match="unknown accountant"):
        epsilon_of_history([(1.0, 0.1, 10)], 1e-5, "gdp")
    assert epsilon_of_history([], 1e-5, "rdp") == 0.0
    assert epsilon_of_history([(0.0, 0.1, 5)], 1e-5, "rdp") == math.inf
    # more steps at the same σ never spend less
    assert (epsilon_of_history([(1.0, 0.1, 20)], 1e-5, "rdp")
            > epsilon_of_history([(1.0, 0.1, 10)], 1e-5, "rdp"))


MIXED = [[(1.1, 0.05, 300), (6.0, 1.0, 1)],
         [(0.9, 0.2, 40), (1.3, 0.2, 10), (3.0, 1.0, 1)]]


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
@pytest.mark.parametrize("history", MIXED)
def test_mixed_history_epsilon_equals_a_fresh_opacus_accountant(history, accountant):
    assert epsilon_of_history(history, 1e-5, accountant) == pytest.approx(
        opacus_epsilon(history, 1e-5, accountant), rel=1e-9)
    # composition: the whole costs more than either part
    whole = epsilon_of_history(history, 1e-5, accountant)
    assert whole > epsilon_of_history(history[:-1], 1e-5, accountant)
    assert whole > epsilon_of_history(history[-1:], 1e-5, accountant)


@pytest.mark.parametrize("accountant,sigma", [("rdp", 2.0), ("prv", 2.0), ("prv", 6.0)])
def test_a_q1_release_is_accounted_as_a_plain_gaussian_mechanism(accountant, sigma):
    """Independent of Opacus: the exact ε of the Gaussian mechanism lower-bounds both
    accountants; PRV (numerically tight) is close to it."""
    exact = gaussian_mechanism_epsilon(sigma, 1e-5)
    reported = epsilon_of_history([(sigma, 1.0, 1)], 1e-5, accountant)
    assert reported >= exact * (1 - 1e-6)
    if accountant == "prv":
        assert reported == pytest.approx(exact, rel=0.03)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_release_noise_fills_the_remaining_budget(accountant):
    target, delta = 2.0, 1e-4
    sgd_sigma = calibrate_noise(target * 0.9, delta, 0.1, 40, accountant)
    history = [(sgd_sigma, 0.1, 40)]
    stats_sigma = calibrate_release_noise(history, target, delta, accountant)
    total = opacus_epsilon([*history, (stats_sigma, 1.0, 1)], delta, accountant)
    assert total <= target
    assert total >= 0.99 * target
    assert opacus_epsilon([*history, (0.98 * stats_sigma, 1.0, 1)], delta, accountant) > target
    with pytest.raises(ValueError, match="whole budget"):
        calibrate_release_noise([(sgd_sigma, 0.1, 400)], target, delta, accountant)
    assert calibrate_release_noise(history, math.inf, delta, accountant) == 0.0


def test_client_accountant_merges_steps_and_separates_kinds():
    acc = ClientAccountant("rdp", 1e-5)
    for _ in range(7):
        acc.record(1.2, 0.1, 1, kind="dp-sgd")
    acc.record(1.2, 1.0, 3, kind="dp-sgd")  # a batch covering all records: q = 1 but DP-SGD
    acc.record(5.0, 1.0, 1, kind="release")
    acc.record(1.0, 0.1, 0)  # zero steps record nothing
    assert acc.history == [(1.2, 0.1, 7), (1.2, 1.0, 3), (5.0, 1.0, 1)]
    assert acc.kinds == ["dp-sgd", "dp-sgd", "release"]
    assert acc.dp_sgd_steps() == 10 and acc.mechanism_runs() == 11
    assert acc.epsilon() == pytest.approx(opacus_epsilon(acc.history, 1e-5, "rdp"), rel=1e-9)
    assert acc.epsilon_of_dp_sgd() == pytest.approx(opacus_epsilon(acc.history[:2], 1e-5, "rdp"), rel=1e-9)
    assert acc.epsilon_of_release() == pytest.approx(opacus_epsilon(acc.history[2:], 1e-5, "rdp"), rel=1e-9)
    restored = ClientAccountant.from_state_dict(acc.state_dict())
    assert restored.history == acc.history and restored.kinds == acc.kinds
    with pytest.raises(ValueError):
        acc.record(1.0, 0.5, 1, kind="other")


def test_accountant_kinds_are_recorded_and_survive_state_dicts():
    accountant = ClientAccountant("rdp", 1e-4)
    accountant.record(1.0, 1.0, 3, kind="dp-sgd")   # a full-batch DP-SGD step has q = 1 too
    accountant.record(5.0, 1.0, 1, kind="release")
    assert accountant.dp_sgd_steps() == 3 and accountant.kinds == ["dp-sgd", "release"]
    restored = ClientAccountant.from_state_dict(accountant.state_dict())
    assert restored.kinds == accountant.kinds and restored.epsilon() == accountant.epsilon()
    legacy = ClientAccountant.from_state_dict({"accountant": "rdp", "delta": 1e-4,
                                               "history": [[1.0, 0.1, 4], [5.0, 1.0, 1]]})
    assert legacy.kinds == ["dp-sgd", "release"]
    with pytest.raises(ValueError, match="kind"):
        accountant.record(1.0, 0.5, 1, kind="other")


def test_plan_calibrates_for_the_steps_really_run():
    privacy = PrivacyConfig(epsilon=3.0, delta=1e-5, stats_epsilon_fraction=0.2, max_records=250,
                            reserved_rounds=0)
    plan = plan_dp_sgd(num_records=180, batch_size=32, rounds=4, local_epochs=2, privacy=privacy,
                       dp_sgd_share=0.8)  # planned from the public bound 250, not from n = 180
    assert plan.sample_rate == pytest.approx(32 / 250)
    assert plan.expected_batch_size == pytest.approx(32.0)
    assert plan.steps_per_epoch == math.ceil(250 / 32) and plan.total_steps == 4 * 2 * 8
    spent = opacus_epsilon([(plan.noise_multiplier, plan.sample_rate, plan.total_steps)], 1e-5, "rdp")
    assert 0.98 * 2.4 <= spent <= 2.4
    no_dp = plan_dp_sgd(250, 32, 4, 2, PrivacyConfig(epsilon=math.inf))
    assert no_dp.noise_multiplier == 0.0 and no_dp.num_records == 250  # no DP: n itself


def test_plan_keeps_reserved_rounds_in_the_calibration():
    privacy = PrivacyConfig(epsilon=2.0, delta=1e-5, max_records=200, reserved_rounds=2)
    plan = plan_dp_sgd(num_records=120, batch_size=25, rounds=3, local_epochs=1, privacy=privacy)
    assert plan.total_steps == (3 + 2) * 8
    spent = opacus_epsilon([(plan.noise_multiplier, plan.sample_rate, plan.total_steps)], 1e-5, "rdp")
    assert 0.98 * 2.0 <= spent <= 2.0
