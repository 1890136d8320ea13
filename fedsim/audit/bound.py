"""The one-run audit's lower bound on ε (Steinke, Nasr & Jagielski 2023, "Privacy
Auditing with One (1) Training Run", Theorem 5.2 / Corollary 5.4, Appendix D).

``m`` canaries are each included with probability ½, independently.  After one run the
auditor guesses "included" or "excluded" for ``r ≤ m`` canaries (abstaining on the rest)
and ``v`` guesses are correct.  If the mechanism is (ε, δ)-DP with respect to each
canary, then (Corollary 5.4)

    P[≥ v correct] ≤ P[Binomial(r, p_ε) ≥ v] + 2·m·δ · max_{1≤i≤v} P[v−i ≤ Binomial(r, p_ε) < v] / i,

with ``p_ε = e^ε / (1 + e^ε)`` the accuracy of ε-DP randomized response.  The audit's
lower bound at level β is the largest ε whose p-value is still < β: with probability
≥ 1 − β over the run, a mechanism that is (ε, δ)-DP yields ``ε_lb ≤ ε``.

:func:`epsilon_lower_bound` finds it by bisection, as the paper's Appendix D does.
:func:`audit_guesses` turns scores into guesses (the top ``k`` scores "included", the
bottom ``k`` "excluded") for several ``k`` and reports the best bound, each tested at
β / (number of ``k`` tried) (Bonferroni), so the maximum is still a valid bound at β.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

BISECTION_STEPS = 40


def randomized_response_accuracy(epsilon: float) -> float:
    """``p_ε = e^ε / (1 + e^ε)``: the best guessing accuracy against ε-DP."""
    return 1.0 / (1.0 + math.exp(-epsilon))


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """The bound of Corollary 5.4 on P[≥ v correct of r guesses] under (ε, δ)-DP (module docstring)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError("need epsilon >= 0 and delta in [0, 1]")
    accuracy = randomized_response_accuracy(epsilon)
    tail = stats.binom.sf(v - 1, r, accuracy)                      # P[Binomial(r, p) ≥ v]
    if delta == 0 or v == 0:
        return min(float(tail), 1.0)
    below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, accuracy)  # P[B = v−i], i = 1..v
    worst = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))  # max_i P[v−i ≤ B < v] / i
    return min(float(tail) + 2.0 * m * delta * worst, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, beta: float = 0.05) -> float:
    """The largest ε (to bisection precision) whose p-value is < ``beta``; 0 when even ε = 0
    is not rejected.  With probability ≥ 1 − β an (ε, δ)-DP mechanism gives a value ≤ ε."""
    if not 0 < beta < 1:
        raise ValueError("beta must be in (0, 1)")
    if p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, high, delta) < beta:
        low, high = high, 2.0 * high
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2.0
        if p_value(m, r, v, middle, delta) < beta:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class AuditBound:
    """The audit's result: the best ``ε_lb`` over the guess counts tried, with the
    ``r`` guesses and ``v`` correct ones that gave it."""

    epsilon_lower_bound: float
    guesses: int
    correct: int
    canaries: int
    delta: float
    beta: float
    guess_counts_tried: tuple[int, ...]
    correct_per_count: tuple[tuple[int, int], ...] = ()
    """``(r, v)`` for every guess count tried."""
    ceiling: float = float("nan")
    """The most this audit could show: ``ε_lb`` of a perfect attack (every guess right) with
    the same ``m``, δ, β and guess counts (:func:`epsilon_ceiling`)."""

    def as_dict(self) -> dict:
        return asdict(self)


def guess_counts(m: int) -> tuple[int, ...]:
    """Total guess counts ``r`` tried (half "included", half "excluded"): 2, 4, 8, … ≤ m."""
    counts, r = [], 2
    while r <= m:
        counts.append(r)
        r *= 2
    return tuple(counts)


def epsilon_ceiling(m: int, delta: float, beta: float = 0.05, counts: tuple[int, ...] | None = None) -> float:
    """The largest ``ε_lb`` an audit with ``m`` canaries can report: every one of ``r`` guesses
    correct, for the best ``r`` in ``counts`` (default :func:`guess_counts`), each tested at
    ``β / len(counts)`` as :func:`audit_guesses` does.  With δ > 0 the ``2mδ`` term caps it
    (e.g. 2.9 for m = 1000, δ = 1e-4, β = 0.05): a larger ε cannot be shown with ``m``
    canaries, whatever the mechanism."""
    counts = guess_counts(m) if counts is None else counts
    level = beta / len(counts)
    return max(epsilon_lower_bound(m, r, r, delta, level) for r in counts)


def audit_guesses(scores: np.ndarray, included: np.ndarray, delta: float, beta: float = 0.05,
                  counts: tuple[int, ...] | None = None) -> AuditBound:
    """Guess "included" for the ``r/2`` highest scores and "excluded" for the ``r/2`` lowest,
    for every ``r`` in ``counts`` (default :func:`guess_counts`), and return the largest
    ``ε_lb``, each ``r`` tested at ``β / len(counts)`` (module docstring)."""
    scores, included = np.asarray(scores, dtype=float), np.asarray(included, dtype=bool)
    m = len(scores)
    if m < 2 or included.shape != scores.shape:
        raise ValueError("need at least two canaries and one inclusion bit per score")
    counts = guess_counts(m) if counts is None else counts
    order = np.argsort(-scores, kind="stable")
    level = beta / len(counts)
    tried = []
    for r in counts:
        half = r // 2
        correct = int(included[order[:half]].sum() + (~included[order[m - (r - half):]]).sum())
        tried.append((epsilon_lower_bound(m, r, correct, delta, level), r, correct))
    bound, r, correct = max(tried, key=lambda entry: entry[0])  # the first of equal bounds
    return AuditBound(bound, r, correct, m, delta, beta, tuple(counts),
                      tuple((r, correct) for _, r, correct in tried), epsilon_ceiling(m, delta, beta, counts))
