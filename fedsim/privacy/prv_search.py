"""PRV noise calibration: solve on a cheap estimate, check with Opacus' ε.

Opacus' PRV ε (Gopi et al. 2021; :func:`~fedsim.privacy.opacus_epsilon.prv_epsilon`)
costs tens of milliseconds per σ — more for long histories — so a bisection of a dozen
evaluations takes a second per plan.  Here the search runs on
:func:`~fedsim.privacy.opacus_epsilon.prv_epsilon_estimate` (the same computation on a
5× coarser mesh, ≈ 10⁻⁴ from Opacus' value and nearly constant in σ), and Opacus' ε
itself is evaluated only at the candidate answers:

1. σ₁ = the root of ``estimate(σ) + offset = aim`` (offset 0 at first; aim = the middle
   of the accepted band [target − tolerance, target]) to within tolerance/8 in ε, by
   :func:`~fedsim.privacy.log_root.secant_log_root` on log σ (two or three estimates),
   or if that fails by :func:`~fedsim.privacy.log_root.bracket_log_root`;
2. ε₁ = Opacus' ε at σ₁ (``spent``).  If ε₁ is in the band, σ₁ is the answer;
3. otherwise the estimate's error there, ``offset = ε₁ − estimate(σ₁)``, corrects the
   next root (defect correction), and 1–3 repeat, at most :data:`MAX_CHECKS` times.

Safety: a σ is returned only after ``spent(σ)`` — Opacus' ε to the last bit — was
found ≤ target; the estimate only decides where to look.  ``None`` (no σ found within
:data:`MAX_CHECKS` checks) sends the caller to its plain bisection on Opacus' ε.
"""

from __future__ import annotations

from typing import Callable

from fedsim.privacy.log_root import bracket_log_root, interpolated_root, log_residual, secant_log_root

MAX_CHECKS = 4
"""Evaluations of Opacus' ε before the search gives up (usually one suffices)."""
ESTIMATES_PER_ROOT = 12
"""Estimate evaluations allowed to each root search (secant, then bracketing)."""
SECANT_STEPS = 6
"""Estimate evaluations allowed to the secant search before the bracketing one."""
ROOT_RELATIVE_WIDTH = 1e-3
"""Each root search narrows its bracket to this relative width; the root is then
interpolated (the accepted band is ≥ 2.5 × 10⁻³ wide in σ for the plans of fedsim)."""


def search_with_estimate(
    spent: Callable[[float], float],
    estimate: Callable[[float], float],
    target: float,
    tolerance: float,
    guess: float,
    sigma_cap: float,
    base: float = 0.0,
    slope: float = -1.0,
) -> float | None:
    """σ with ``target − tolerance ≤ spent(σ) ≤ target`` found as in the module
    docstring, or ``None``.  ``estimate`` approximates ``spent``; ``base`` is the ε that
    stays as σ → ∞ (a fixed history's, estimated) and ``slope`` the log–log slope of
    ε − base in σ (:mod:`fedsim.privacy.log_root`)."""
    aim = target - tolerance / 2
    offset = 0.0
    estimates: dict[float, float] = {}

    def estimated(sigma: float) -> float:
        if sigma not in estimates:
            estimates[sigma] = estimate(sigma)
        return estimates[sigma]

    for _ in range(MAX_CHECKS):
        level = aim - offset
        if level <= base:
            return None
        def residual(sigma: float) -> float:
            return log_residual(estimated(sigma), level, base)

        found = secant_log_root(residual, guess, slope, tolerance / 8 / (level - base), SECANT_STEPS, sigma_cap)
        if found is None:
            bracket = bracket_log_root(residual, guess, slope, ROOT_RELATIVE_WIDTH, ESTIMATES_PER_ROOT, sigma_cap)
            if bracket is None:
                return None
            found = interpolated_root(bracket)
        sigma = found
        epsilon = spent(sigma)
        if target - tolerance <= epsilon <= target:
            return sigma
        offset = epsilon - estimated(sigma)
        guess = sigma
    return None
