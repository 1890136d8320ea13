"""Opacus' ε (RDP and PRV accountants), bit for bit, without the work that cannot change it.

Opacus' RDP accountant computes the Rényi DP of the subsampled Gaussian mechanism at
151 orders α (``RDPAccountant.DEFAULT_ALPHAS``: 1.1, 1.2, …, 10.9, 12, …, 63) and
reports the smallest conversion to (ε, δ) (Balle et al. 2020, Thm. 21):

    ε = min_α  RDP(α) − (log δ + log α) / (α − 1) + log((α − 1) / α).

A fractional order costs a series whose length grows like ``e^{30/(α+2)}`` when
q ≈ 1/2 (thousands of terms for α < 2), so one ε takes up to seconds; Opacus' PRV
accountant computes the RDP ε twice more to size its domain.  Yet only orders near the
optimum can attain the minimum.  Rényi divergence does not decrease with the order
(van Erven & Harremoës 2014, Thm. 3), so for a fractional α between the integer orders
k < α < k + 1 of the list, ``RDP(α) ≥ RDP(k)`` (and ``≥ 0`` below 2); likewise between
integer orders.  This module computes a sparse set of integer "anchor" orders (finite
sums, cheap), bounds every other order from below by the anchor under it, and computes
exactly — with Opacus' own scalar function, or for integer orders its very operations
with the binomial coefficients' logs kept — only the orders whose bound does not exclude
them.  The minimum is then taken the way Opacus
takes it (same vectors, same ``nanargmin``), so the ε is Opacus' to the last bit
(tests compare with fresh Opacus accountants by equality).  Per-order values of one
step ``(σ, q)`` are kept, so the PRV domain and repeated reports reuse them.

:func:`prv_epsilon` is ``PRVAccountant.get_epsilon`` (Gopi et al. 2021) built from
Opacus' own pieces, with only the domain's RDP bound computed as above.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.analysis.prv import (
    Domain,
    PoissonSubsampledGaussianPRV,
    TruncatedPrivacyRandomVariable,
    DiscretePRV,
    compose_heterogeneous,
    discretize,
)
from scipy import special

Entry = tuple[float, float, int]
"""One mechanism of a history: ``(noise_multiplier, sample_rate, steps)``."""

ORDERS = np.atleast_1d(np.asarray(RDPAccountant.DEFAULT_ALPHAS, dtype=float))
_INTEGER = np.array([float(a).is_integer() for a in ORDERS])
_ANCHOR_ORDERS = (2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 63)
_ANCHOR = np.isin(ORDERS, _ANCHOR_ORDERS)
"""Integer orders always computed (finite sums); every other order is bounded below by
the RDP at the largest anchor under it."""
# For each order, the index of the largest anchor order at or below it (-1 below 2:
# the lower bound there is RDP ≥ 0).
_FLOOR_ANCHOR = np.array([
    max((j for j in range(len(ORDERS)) if _ANCHOR[j] and ORDERS[j] <= a), default=-1)
    for a in ORDERS
])
PRUNE_MARGIN = 1e-3
"""A fractional order is computed unless its lower bound exceeds the best ε found at
integer orders by more than this relative margin (a guard against rounding in
Opacus' series; a wider margin only computes more orders)."""


class _OneStepRDP:
    """RDP of one subsampled Gaussian step ``(σ, q)`` per order, each computed on
    demand by Opacus' ``compute_rdp`` (the very values its accountant uses) and kept."""

    def __init__(self, noise_multiplier: float, sample_rate: float) -> None:
        self.noise_multiplier, self.sample_rate = noise_multiplier, sample_rate
        self.values = np.full(len(ORDERS), np.nan)
        self.known = np.zeros(len(ORDERS), dtype=bool)

    def at(self, indices: np.ndarray) -> np.ndarray:
        missing = indices[~self.known[indices]]
        if len(missing):
            q, sigma = self.sample_rate, self.noise_multiplier
            if 0 < q < 1 and sigma > 0:
                integer = missing[_INTEGER[missing]]
                for index in integer:
                    order = ORDERS[index]
                    self.values[index] = _log_a_integer_order(q, sigma, int(order)) / (order - 1)
                missing = missing[~_INTEGER[missing]]
                self.known[integer] = True
            if len(missing):
                self.values[missing] = rdp_analysis.compute_rdp(
                    q=q, noise_multiplier=sigma, steps=1, orders=ORDERS[missing])
                self.known[missing] = True
        values: np.ndarray = self.values[indices]
        return values


@functools.lru_cache(maxsize=None)
def _log_binomials(order: int) -> tuple[float, ...]:
    """``math.log(special.binom(order, i))`` for i = 0..order, the coefficients Opacus
    recomputes at every call (scipy's ``binom`` ufunc: same values on an array)."""
    return tuple(math.log(c) for c in special.binom(order, np.arange(order + 1)))


def _log_a_integer_order(q: float, sigma: float, order: int) -> float:
    """Opacus' ``_compute_log_a_for_int_alpha`` (Mironov et al. 2019, §3.3), the same
    operations in the same order, with the binomial coefficients' logs kept."""
    log_a = -np.inf
    log_q, log_1mq = math.log(q), math.log(1 - q)
    for i, log_binomial in enumerate(_log_binomials(order)):
        log_coef_i = log_binomial + i * log_q + (order - i) * log_1mq
        s = log_coef_i + (i * i - i) / (2 * (sigma**2))
        low, high = min(log_a, s), max(log_a, s)  # rdp_analysis._log_add, inlined
        log_a = high if low == -np.inf else math.log1p(math.exp(low - high)) + high
    return float(log_a)


@functools.lru_cache(maxsize=8192)
def _one_step(noise_multiplier: float, sample_rate: float) -> _OneStepRDP:
    return _OneStepRDP(noise_multiplier, sample_rate)


def _composed_rdp(entries: list[Entry], indices: np.ndarray) -> np.ndarray:
    """Σ_entries steps · RDP_entry(α) at the given orders, summed in Opacus' order."""
    total: np.ndarray = np.zeros(len(indices))  # 0.0 + x is x: the sum of the entries
    for sigma, q, steps in entries:
        total = total + _one_step(float(sigma), float(q)).at(indices) * int(steps)
    return total


def rdp_epsilon(entries: list[Entry], delta: float) -> float:
    """``RDPAccountant(history=entries).get_epsilon(delta)``, bit for bit (module
    docstring); every noise multiplier must be > 0."""
    offset = (np.log(delta) + np.log(ORDERS)) / (ORDERS - 1)  # Opacus' expression, same vectors
    log_ratio = np.log((ORDERS - 1) / ORDERS)
    anchors = np.flatnonzero(_ANCHOR)
    eps = np.full(len(ORDERS), np.inf)
    eps[anchors] = _composed_rdp(entries, anchors) - offset[anchors] + log_ratio[anchors]
    best = np.nanmin(eps[anchors]) if not np.isnan(eps[anchors]).all() else np.inf
    others = np.flatnonzero(~_ANCHOR)
    floor = _FLOOR_ANCHOR[others]
    below = np.zeros(len(others))
    has_floor = floor >= 0
    below[has_floor] = _composed_rdp(entries, floor[has_floor])
    bound = below - offset[others] + log_ratio[others]
    candidates = others[~(bound > best + PRUNE_MARGIN * abs(best) + 1e-12)]
    if len(candidates):
        eps[candidates] = _composed_rdp(entries, candidates) - offset[candidates] + log_ratio[candidates]
    if np.isnan(eps).all():
        return math.inf
    return float(eps[np.nanargmin(eps)])


SQRT2 = np.sqrt(2)
"""Opacus' ``prvs.SQRT2``."""


class _TruncatedPRV(TruncatedPrivacyRandomVariable):  # type: ignore[misc]  # opacus ships no type information
    """Opacus' truncated PRV, the same values to the last bit, faster.

    ``PoissonSubsampledGaussianPRV.cdf`` (Gopi et al. 2021, Prop. B4) is computed with
    the same numpy/scipy functions on the same operands in the same order, but
    ``cdf(t_min)`` once instead of at every point, ``exp(t)`` once instead of twice, the
    branch ``t > log(1 − q)`` only where ``np.where`` would select it, and at a single
    point (``t`` a float: every point the mean's quadrature visits) on numbers instead of
    0-d arrays, about ten times faster there.  Tests compare ε with Opacus' accountant by
    equality."""

    def __init__(self, prv: PoissonSubsampledGaussianPRV, t_min: float, t_max: float) -> None:
        super().__init__(prv, t_min, t_max)
        self._cdf_at_t_min = self._prv.cdf(self.t_min)
        q, sigma = prv.sample_rate, prv.noise_multiplier
        with np.errstate(divide="ignore"):  # q = 1: log 0 = -inf, as in Opacus
            self._log_1mq = np.log(1 - q)
        self._sigma_squared = sigma**2
        self._erfc_scale = 2 * SQRT2 * sigma

    def _above_threshold_cdf(self, t: np.ndarray) -> np.ndarray:
        """The untruncated cdf where ``t > log(1 − q)`` (Opacus' expression, its order)."""
        q = self._prv.sample_rate
        z = np.log((np.exp(t) + q - 1) / q)
        values: np.ndarray = (-q * special.erfc((2 * z * self._sigma_squared - 1) / self._erfc_scale) / 2
                              - (1 - q) * special.erfc((2 * z * self._sigma_squared + 1) / self._erfc_scale) / 2
                              + 1.0)
        return values

    def cdf(self, t: np.ndarray | float) -> np.ndarray | float:
        if isinstance(t, float):
            return self._point_cdf(t)
        above = t > self._log_1mq
        untruncated = np.zeros(np.shape(t))
        untruncated[above] = self._above_threshold_cdf(np.asarray(t)[above])
        return np.where(
            t < self.t_min,
            0.0,
            np.where(t < self.t_max, (untruncated - self._cdf_at_t_min) / self._remaining_mass, 1.0),
        )

    def _point_cdf(self, t: float) -> float:
        """``cdf`` at one point: numpy's and scipy's functions on Python floats, the
        arithmetic in Python floats (IEEE double, as numpy's)."""
        if t < self.t_min:
            return 0.0
        if not t < self.t_max:
            return 1.0
        untruncated = 0.0
        if t > self._log_1mq:
            q, sigma_squared, scale = self._prv.sample_rate, float(self._sigma_squared), float(self._erfc_scale)
            z = float(np.log((float(np.exp(t)) + q - 1) / q))
            untruncated = (-q * float(special.erfc((2 * z * sigma_squared - 1) / scale)) / 2
                           - (1 - q) * float(special.erfc((2 * z * sigma_squared + 1) / scale)) / 2
                           + 1.0)
        return float((untruncated - self._cdf_at_t_min) / self._remaining_mass)


class _QuadratureMeanPRV(_TruncatedPRV):
    """The truncated PRV with its mean by a fixed Gauss–Legendre rule, vectorised
    (for :func:`prv_epsilon_estimate` only: close to Opacus' adaptive quadrature, not
    bit for bit).  By parts, E[L] = t_max − ∫ F(t) dt over [t_min, t_max]; the panels
    are split at 0 and at ±10^k (k = −6 … 1) so that the cdf's transition, at the scale
    of the PRV's spread (from 10⁻⁵ to 1), falls in panels of its own size."""

    NODES, WEIGHTS = np.polynomial.legendre.leggauss(48)

    def mean(self) -> float:
        magnitudes = np.logspace(-6, 1, 15)
        inner = np.concatenate([-magnitudes[::-1], [0.0], magnitudes])
        points = np.concatenate([[self.t_min], inner[(inner > self.t_min) & (inner < self.t_max)], [self.t_max]])
        half = np.diff(points)[:, None] / 2
        middle = (points[:-1, None] + points[1:, None]) / 2
        values = self.cdf(middle + half * self.NODES)
        integral = float(np.sum(half[:, 0] * (values @ self.WEIGHTS)))
        return float(self.t_max - integral)


_ANCHOR_ORDERS_ARRAY = ORDERS[_ANCHOR]
_TERMS = np.arange(int(_ANCHOR_ORDERS_ARRAY.max()) + 1)
_INSIDE = _TERMS[None, :] <= _ANCHOR_ORDERS_ARRAY[:, None]
_LOG_BINOMIALS = np.where(
    _INSIDE,
    special.gammaln(_ANCHOR_ORDERS_ARRAY[:, None] + 1) - special.gammaln(_TERMS + 1)
    - special.gammaln(np.maximum(_ANCHOR_ORDERS_ARRAY[:, None] - _TERMS, 0) + 1),
    -np.inf,
)
_TAIL_POWERS = np.where(_INSIDE, _ANCHOR_ORDERS_ARRAY[:, None] - _TERMS, 0)


def _anchor_rdp_epsilon(entries: list[Entry], delta: float) -> float:
    """:func:`rdp_epsilon` up to rounding or above it, for the estimate's domain only:
    the RDP of integer orders α (Mironov et al. 2019, §3.3: log Σ_i C(α,i) q^i (1−q)^(α−i)
    e^((i²−i)/(2σ²)) / (α − 1)) at the anchor orders alone, all at once — the minimum
    over fewer orders is no smaller.  Not Opacus' value to the last bit."""
    orders = _ANCHOR_ORDERS_ARRAY
    total = np.zeros(len(orders))
    for sigma, q, steps in entries:
        if q == 1.0:
            total += steps * orders / (2 * sigma**2)
            continue
        exponents = (_LOG_BINOMIALS + _TERMS * math.log(q) + _TAIL_POWERS * math.log1p(-q)
                     + (_TERMS**2 - _TERMS) / (2 * sigma**2))
        peak = exponents.max(axis=1)
        log_a = peak + np.log(np.exp(exponents - peak[:, None]).sum(axis=1))
        total += steps * log_a / (orders - 1)
    epsilon = total - (math.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    return float(np.min(epsilon))


def _composed_prv(entries: list[Entry], delta_error: float, eps_error: float,
                  truncated_prv: type[_TruncatedPRV], rdp_bound: Callable[[list[Entry], float], float],
                  max_points: int | None = None) -> DiscretePRV | None:
    """Opacus' ``PRVAccountant._get_dprv``: the domain of ``compute_safe_domain_size``
    (its RDP ε by ``rdp_bound``), each PRV truncated and discretised, composed by FFT;
    ``None`` if the domain has more than ``max_points`` points."""
    prvs = [PoissonSubsampledGaussianPRV(q, sigma) for sigma, q, _ in entries]
    compositions = [steps for _, _, steps in entries]
    total_compositions = sum(compositions)
    domain_bound = rdp_bound(entries, delta_error / 4)
    for sigma, q, _ in entries:
        domain_bound = max(domain_bound, rdp_bound([(sigma, q, 1)], delta_error / (8 * total_compositions)))
    half_width = max(domain_bound, eps_error) + 3
    mesh_size = eps_error / np.sqrt(total_compositions * np.log(12 / delta_error) / 2)
    domain = Domain.create_aligned(-half_width, half_width, mesh_size)
    if max_points is not None and domain.size > max_points:
        return None
    truncated = [truncated_prv(prv, domain.t_min, domain.t_max) for prv in prvs]
    return compose_heterogeneous(dprvs=[discretize(t, domain) for t in truncated],
                                 num_self_compositions=compositions)


PRV_EPS_ERROR = 0.01
"""Opacus' default ``eps_error`` of ``PRVAccountant.get_epsilon``."""
ESTIMATE_EPS_ERROR = 0.05
"""Mesh of :func:`prv_epsilon_estimate`: that of ``eps_error = 0.05`` (5× coarser, 5× fewer points)."""
ESTIMATE_MAX_POINTS = 1 << 21
""":func:`prv_epsilon_estimate` answers ∞ rather than discretise on more points (tiny σ: a huge domain)."""


def prv_epsilon(entries: list[Entry], delta: float, eps_error: float = PRV_EPS_ERROR) -> float:
    """``PRVAccountant(history=entries).get_epsilon(delta)`` with Opacus' defaults
    (``eps_error = 0.01``, ``delta_error = δ/1000``), bit for bit: the same PRVs,
    domain, discretisation and FFT composition, returning the upper bound on ε."""
    delta_error = delta / 1000
    composed = _composed_prv(entries, delta_error, eps_error, _TruncatedPRV, rdp_epsilon)
    assert composed is not None  # no size limit
    _, _, eps_upper = composed.compute_epsilon(delta, delta_error, eps_error)
    return float(eps_upper)


def prv_epsilon_estimate(entries: list[Entry], delta: float, mesh_error: float = ESTIMATE_EPS_ERROR) -> float:
    """An estimate of :func:`prv_epsilon` (what Opacus would report), several times
    cheaper, for searches that then check their answer with :func:`prv_epsilon`: the
    same computation on the mesh of ``eps_error = mesh_error`` with the mean by
    :class:`_QuadratureMeanPRV`, and the bound's margin ``eps_error`` of Opacus' default
    (0.01) added to the estimate at ``δ − δ/1000``.  It is not a bound on anything.  A
    domain of more than :data:`ESTIMATE_MAX_POINTS` points (σ far too small) gives ∞."""
    delta_error = delta / 1000
    composed = _composed_prv(entries, delta_error, mesh_error, _QuadratureMeanPRV, _anchor_rdp_epsilon,
                             ESTIMATE_MAX_POINTS)
    if composed is None:
        return math.inf
    _, _, eps_upper = composed.compute_epsilon(delta, delta_error, mesh_error)
    return float(eps_upper - mesh_error + PRV_EPS_ERROR)
