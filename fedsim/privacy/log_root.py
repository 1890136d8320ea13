"""A bracketing root search on log σ, for the noise calibrations.

Calibration solves ε(σ) = level for a noise multiplier σ, ε decreasing in σ.  On
u = log σ the residual g(u) = log(ε(e^u) − base) − log(level − base) is nearly linear
with a known slope: ε ∝ 1/σ for T steps of a subsampled Gaussian (slope −1), and the
excess over a fixed history's ε, ``base``, ∝ 1/σ² for one more Gaussian (slope −2).
:func:`bracket_log_root` finds a bracket by secant steps of that assumed slope from a
guess (widened geometrically until g changes sign), then narrows it by the Illinois
variant of regula falsi (Dowell & Jarratt 1971), which converges superlinearly on such
a nearly linear g; :func:`interpolated_root` is the regula falsi point of the bracket.
:func:`secant_log_root` skips the bracket: secant steps alone, until |g| is small — two
or three evaluations from a fair guess when g is this close to linear.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

SIGMA_FLOOR = 1e-6
"""The search gives up below this σ (ε is still above the level: the level is not reachable)."""


class LogBracket(NamedTuple):
    """σ with ε above the level (``low``, g > 0) and at most the level (``high``, g ≤ 0)."""

    low: float
    g_low: float
    high: float
    g_high: float


def log_residual(epsilon: float, level: float, base: float = 0.0) -> float:
    """g = log(ε − base) − log(level − base): > 0 when ε is above the level (∞ for ε = ∞)."""
    if epsilon == math.inf:
        return math.inf
    return math.log(max(epsilon - base, 1e-300)) - math.log(level - base)


def bracket_log_root(g: Callable[[float], float], guess: float, slope: float, relative_width: float,
                     max_evaluations: int, sigma_cap: float) -> LogBracket | None:
    """A bracket [low, high] of the root of ``g`` (σ ↦ residual, decreasing), narrowed
    until ``high − low ≤ relative_width · high`` or ``max_evaluations`` are spent;
    ``None`` when no sign change was found within the budget, below
    :data:`SIGMA_FLOOR` or above 4 × ``sigma_cap``.  The start is ``guess`` clamped
    to [10⁻³, ``sigma_cap``]."""
    budget = max_evaluations
    low = high = None
    g_low = g_high = math.nan
    sigma = min(max(guess, 1e-3), sigma_cap)
    while budget > 0 and (low is None or high is None) and SIGMA_FLOOR < sigma < 4 * sigma_cap:
        budget -= 1
        value = g(sigma)
        if value > 0:
            if low is None or sigma > low:
                low, g_low = sigma, value
        elif high is None or sigma < high:
            high, g_high = sigma, value
        factor = math.exp(-value / slope) if math.isfinite(value) else 16.0  # secant of assumed slope
        factor = min(max(factor, 1.1), 16.0) if value > 0 else min(max(factor, 1 / 16), 1 / 1.1)
        sigma *= factor
    if low is None or high is None:
        return None
    u_low, u_high = math.log(low), math.log(high)
    weight_low, weight_high = g_low, g_high  # the Illinois weights: g, halved at a stale end
    side = 0
    while budget > 0 and high - low > relative_width * high and math.isfinite(g_low):
        if weight_high != weight_low:
            u = (u_low * weight_high - u_high * weight_low) / (weight_high - weight_low)
        else:
            u = 0.5 * (u_low + u_high)
        if not u_low < u < u_high:
            u = 0.5 * (u_low + u_high)
        budget -= 1
        value = g(math.exp(u))
        if value > 0:
            u_low, g_low, low, weight_low = u, value, math.exp(u), value
            if side == -1:
                weight_high /= 2
            side = -1
        else:
            u_high, g_high, high, weight_high = u, value, math.exp(u), value
            if side == 1:
                weight_low /= 2
            side = 1
    return LogBracket(low, g_low, high, g_high)


def interpolated_root(bracket: LogBracket) -> float:
    """The regula falsi point of a bracket, on log σ (its upper end if g is not finite at the lower)."""
    low, g_low, high, g_high = bracket
    if not math.isfinite(g_low) or g_low == g_high:
        return high
    u_low, u_high = math.log(low), math.log(high)
    return math.exp((u_low * g_high - u_high * g_low) / (g_high - g_low))


MAX_LOG_STEP = math.log(16.0)
"""A secant step changes σ by at most this factor (16)."""


def secant_log_root(g: Callable[[float], float], guess: float, slope: float, tolerance: float,
                    max_evaluations: int, sigma_cap: float) -> float | None:
    """σ with |g(σ)| ≤ ``tolerance`` by the secant method on u = log σ: the first step
    with the assumed ``slope``, later ones with the slope through the last two points
    (the assumed one when that is not negative), each at most ×/÷ 16; where g = +∞ (σ
    far too small), halfway back on log σ to the last finite point.  ``None`` when
    ``max_evaluations`` do not suffice, g is NaN or −∞, or σ leaves
    [:data:`SIGMA_FLOOR`, 4 × ``sigma_cap``].  The start is ``guess`` clamped to
    [10⁻³, ``sigma_cap``]."""
    u = math.log(min(max(guess, 1e-3), sigma_cap))
    previous: tuple[float, float] | None = None  # the last point where g was finite
    for _ in range(max_evaluations):
        if not SIGMA_FLOOR < math.exp(u) < 4 * sigma_cap:
            return None
        value = g(math.exp(u))
        if math.isnan(value):
            return None
        if value == math.inf:  # σ far too small: halfway back to the last finite point, or ×4
            u = 0.5 * (u + previous[0]) if previous is not None else u + math.log(4.0)
            continue
        if abs(value) <= tolerance:
            return math.exp(u)
        step_slope = slope
        if previous is not None and u != previous[0]:
            measured = (value - previous[1]) / (u - previous[0])
            if measured < 0:
                step_slope = measured
        previous = (u, value)
        u += min(max(-value / step_slope, -MAX_LOG_STEP), MAX_LOG_STEP)
    return None
