"""Root searches on log σ (fedsim.privacy.log_root) against closed-form roots: ε = c/σ^k
has its level crossing at σ* = (c/level)^(1/k)."""

from __future__ import annotations

import math

import pytest

from fedsim.privacy.log_root import (
    bracket_log_root,
    interpolated_root,
    log_residual,
    secant_log_root,
)


def power_law(c, k, base=0.0, floor=None):
    def epsilon(sigma):
        if floor is not None and sigma < floor:
            return math.inf  # as the PRV estimate does below a usable σ
        return base + c / sigma**k
    return epsilon


@pytest.mark.parametrize("c,k,base,slope,guess", [(9.0, 1, 0.0, -1.0, 3.0), (9.0, 1.4, 0.0, -1.0, 0.01),
                                                  (0.3, 2, 0.9, -2.0, 50.0), (5.0, 1, 0.0, -1.0, 1e5)])
def test_secant_and_bracket_find_the_closed_form_root(c, k, base, slope, guess):
    level = base + 0.9
    root = (c / (level - base)) ** (1 / k)

    def g(sigma):
        return log_residual(power_law(c, k, base)(sigma), level, base)

    found = secant_log_root(g, guess, slope, 1e-9, 40, 1e6)
    assert found == pytest.approx(root, rel=1e-8)
    bracket = bracket_log_root(g, guess, slope, 1e-6, 60, 1e6)
    assert bracket.low <= root <= bracket.high
    assert bracket.g_low > 0 >= bracket.g_high
    assert interpolated_root(bracket) == pytest.approx(root, rel=1e-6)


def test_the_secant_is_exact_in_one_step_when_the_assumed_slope_is_right():
    calls = []

    def g(sigma):
        calls.append(sigma)
        return log_residual(2.0 / sigma, 0.5)

    assert secant_log_root(g, 3.0, -1.0, 1e-12, 5, 1e6) == pytest.approx(4.0, rel=1e-12)
    assert len(calls) == 2


def test_the_secant_backs_off_where_epsilon_is_infinite():
    def g(sigma):
        return log_residual(power_law(8.0, 1, floor=2.0)(sigma), 1.0)

    assert secant_log_root(g, 0.01, -1.0, 1e-9, 30, 1e6) == pytest.approx(8.0, rel=1e-8)


def test_unreachable_levels_give_none():
    def g(sigma):  # ε ≥ 2 for every σ: the level 1 is never reached
        return log_residual(2.0 + 1.0 / sigma, 1.0)

    assert secant_log_root(g, 1.0, -1.0, 1e-9, 10, 1e6) is None
    assert bracket_log_root(g, 1.0, -1.0, 1e-6, 10, 1e6) is None
