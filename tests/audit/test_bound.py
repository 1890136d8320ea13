"""The one-run audit's bound (Steinke, Nasr & Jagielski 2023, Corollary 5.4) against
independent computations: a closed form, exact enumeration of randomized response, a
per-term loop with math.comb, and its coverage by simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fedsim.audit.bound import audit_guesses, epsilon_ceiling, epsilon_lower_bound, guess_counts, p_value


def _binomial_tail(r: int, v: int, p: float) -> float:
    return sum(math.comb(r, k) * p ** k * (1 - p) ** (r - k) for k in range(v, r + 1))


def test_all_correct_without_delta_is_the_closed_form():
    # δ = 0, v = r: p-value p_ε^r < β  ⇔  ε < logit(β^(1/r))
    for r in (10, 24, 100):
        threshold = 0.05 ** (1 / r)
        expected = math.log(threshold / (1 - threshold))
        assert epsilon_lower_bound(1000, r, r, 0.0, 0.05) == pytest.approx(expected, abs=1e-8)
    # 24 perfect guesses are the fewest that show ε > 2 at β = 0.05
    assert epsilon_lower_bound(1000, 24, 24, 0.0) > 2 > epsilon_lower_bound(1000, 23, 23, 0.0)


def test_without_delta_the_bound_is_exact_for_randomized_response():
    """Enumerate every inclusion vector and every output of ε-DP randomized response on
    m = 6 canaries (the worst case of the theorem); the guess is the output bit."""
    m, epsilon = 6, 0.7
    keep = math.exp(epsilon) / (1 + math.exp(epsilon))
    for v in range(m + 1):
        probability = 0.0
        for included in itertools.product((0, 1), repeat=m):
            for output in itertools.product((0, 1), repeat=m):
                flips = sum(a != b for a, b in zip(included, output))
                if m - flips >= v:
                    probability += 0.5 ** m * keep ** (m - flips) * (1 - keep) ** flips
        assert p_value(m, m, v, epsilon, 0.0) == pytest.approx(probability, rel=1e-10, abs=1e-14)


def test_delta_term_equals_a_loop_over_the_corollary():
    m, r, delta = 50, 30, 1e-3
    for epsilon in (0.0, 0.5, 2.0):
        p = 1 / (1 + math.exp(-epsilon))
        for v in (0, 1, 15, 25, 30):
            worst = max((sum(math.comb(r, k) * p ** k * (1 - p) ** (r - k) for k in range(v - i, v)) / i
                         for i in range(1, v + 1)), default=0.0)
            expected = min(_binomial_tail(r, v, p) + 2 * m * delta * worst, 1.0)
            assert p_value(m, r, v, epsilon, delta) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_bound_is_monotone_and_zero_at_chance():
    bounds = [epsilon_lower_bound(200, 100, v, 1e-5) for v in (50, 60, 70, 80, 90, 100)]
    assert bounds[0] == 0.0
    assert all(a < b for a, b in zip(bounds[1:], bounds[2:]))
    # δ only lowers the bound
    assert epsilon_lower_bound(200, 100, 90, 1e-3) < epsilon_lower_bound(200, 100, 90, 0.0)


def test_guesses_take_top_and_bottom_scores():
    scores = np.arange(8.0)
    included = np.array([0, 0, 1, 0, 1, 1, 0, 1], dtype=bool)
    result = audit_guesses(scores, included, 0.0, 0.05, counts=(4,))
    # top 2 (7, 6): one included; bottom 2 (0, 1): both excluded
    assert (result.guesses, result.correct) == (4, 3)
    assert guess_counts(20) == (2, 4, 8, 16)


def test_bound_covers_randomized_response_at_its_epsilon():
    """Coverage: against ε-DP randomized response the audit exceeds ε in at most ≈ β of runs."""
    rng = np.random.default_rng(0)
    m, epsilon, runs = 128, 1.0, 60
    keep = math.exp(epsilon) / (1 + math.exp(epsilon))
    exceed = 0
    for _ in range(runs):
        included = rng.random(m) < 0.5
        output = np.where(rng.random(m) < keep, included, ~included)
        scores = output + 1e-3 * rng.random(m)
        exceed += audit_guesses(scores, included, 0.0, 0.05).epsilon_lower_bound > epsilon
    assert exceed <= 3 + 0.05 * runs


def test_the_ceiling_is_what_a_perfect_attack_gets():
    m, delta = 1000, 1e-4
    scores = np.concatenate([np.ones(500), np.zeros(500)])       # every included canary scores higher
    perfect = audit_guesses(scores, scores > 0.5, delta)
    assert perfect.ceiling == perfect.epsilon_lower_bound
    assert perfect.correct == perfect.guesses
    assert 2.5 < perfect.ceiling < 3.0                            # δ's 2mδ term caps it (README figure)
    # without δ: the closed form at the largest r (all-correct bound grows with r)
    level = 0.05 / len(guess_counts(m))
    threshold = level ** (1 / guess_counts(m)[-1])
    assert epsilon_ceiling(m, 0.0) == pytest.approx(math.log(threshold / (1 - threshold)), abs=1e-8)
    # a weaker attack on the same canaries reports the same ceiling but a lower bound
    noisy = audit_guesses(scores + np.random.default_rng(0).normal(0, 1.0, m), scores > 0.5, delta)
    assert noisy.ceiling == perfect.ceiling and noisy.epsilon_lower_bound < perfect.ceiling
