"""Noise calibration: the smallest σ that keeps a client's ε at its target.

Two searches, both over a function ε(σ) that does not increase with σ:

* :func:`calibrate_noise` — the DP-SGD plan: ``steps`` Poisson-subsampled Gaussian steps
  at rate ``q``; σ with ``target − 0.005 ≤ ε(σ) ≤ target`` (Opacus'
  ``get_noise_multiplier(..., epsilon_tolerance=0.005)`` criterion);
* :func:`calibrate_release_noise` — one extra Gaussian mechanism (q = 1) after a history
  (statistics, label counts); the smallest σ_s that keeps the composed ε ≤ target.

RDP: the answers are exactly those of the plain searches (Opacus' ``get_noise_multiplier``:
doubling from σ = 20, then bisection until ``target − 0.005 ≤ ε(σ) ≤ target``; the
release: doubling from 1, then bisection until the bracket is within ``tolerance``
(relative) of its upper end, which is returned), but the accountant is asked only a
handful of times.  A bisection only ever asks "is ε(σ) above the level?", and by
monotonicity an evaluation at σ' ≥ σ with ε(σ') above the level answers "yes" for σ
(one at σ' ≤ σ below the level answers "no").  :class:`_MonotoneEpsilon` keeps every
evaluation and answers from them when they settle the question, evaluating only
otherwise.  Before the bisection runs, a bracketing root search on log σ
(:func:`~fedsim.privacy.log_root.bracket_log_root`) evaluates the accountant around the
σ where ε = target, so the bisection's far questions are settled and only its last few,
close to the answer, evaluate (≈ 8 evaluations against ≈ 11, none of the expensive ones
at small σ); each evaluation is cheap (:mod:`fedsim.privacy.opacus_epsilon`).  The
answer is the plain bisection's as long as ε(σ) is monotone (exactly so for RDP).  The
returned σ is always evaluated: if ε(σ) > target (non-monotone ε), the plain bisection
runs instead.

PRV: Opacus' PRV ε costs tens of milliseconds per σ, so the search runs on a cheap
estimate of it and evaluates Opacus' ε only at the candidate answer, usually once
(:mod:`fedsim.privacy.prv_search`).  The DP-SGD σ meets the same criterion as above
(``target − 0.005 ≤ ε ≤ target``); the release σ_s gives a composed ε in
``[target·(1 − 10⁻³), target]`` (:data:`PRV_RELEASE_TOLERANCE`).  Either way the returned
σ's ε, by Opacus' PRV accountant to the last bit, is ≤ target; if the search finds none
within a few checks, the bisections above run on Opacus' ε instead.

Caching: a calibration is a pure function of its inputs (target ε, δ, q, T or the
history, accountant, tolerance).  Results are kept in memory and in a JSON file,
``$FEDSIM_CACHE_DIR/calibration.json`` (default ``~/.cache/fedsim/calibration.json``),
written atomically (at most once a second, and at exit); each record stores its inputs with the output and is keyed by
those inputs on load.  The file also names the Opacus version and this search's format;
a file of another version, or one that cannot be read, is ignored with a warning and
rewritten.  A PRV record's inputs name its search (``prv_search``), so records of the
earlier PRV bisection are not reused.  Clients share a plan — hence one search — when
they share the public record bound (``--privacy.max-records``: all of them by default).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import opacus

from fedsim.io_utils import write_json_atomic
from fedsim.privacy.accounting import AccountantName, epsilon_of_history
from fedsim.privacy.log_root import bracket_log_root, log_residual
from fedsim.privacy.opacus_epsilon import prv_epsilon_estimate
from fedsim.privacy.prv_search import search_with_estimate

OPACUS_EPSILON_TOLERANCE = 0.005
"""ε tolerance of the DP-SGD search: the calibrated σ spends ε in [target − 0.005, target]."""
OPACUS_MAX_SIGMA = 1e6
"""Opacus' ``MAX_SIGMA``: the DP-SGD search gives up beyond it."""
RELEASE_TOLERANCE = 1e-3
"""Relative σ tolerance of the RDP release search: the upper end of a bracket no wider than this share of it."""
PRV_RELEASE_TOLERANCE = 1e-3
"""Relative ε tolerance of the PRV release search: the composed ε is in [target·(1 − 10⁻³), target]."""
PRV_SEARCH = "estimate-then-check"
"""Named in the inputs of PRV calibrations (their answers are those of :mod:`fedsim.privacy.prv_search`)."""
CACHE_FORMAT = 1
PREWARM_RELATIVE_WIDTH = 1e-4

WRITE_INTERVAL_S = 1.0
"""New records are written to the cache file at most this often (and at exit)."""

_memory: dict[str, float] = {}
_disk: dict[str, dict[str, Any]] | None = None
_disk_path: Path | None = None
_pending: dict[Path, dict[str, dict[str, Any]]] = {}
_last_write = -math.inf
evaluations = 0
"""Number of accountant evaluations made by calibrations in this process (for tests and benchmarks)."""
estimate_evaluations = 0
"""Number of PRV estimates (:func:`~fedsim.privacy.opacus_epsilon.prv_epsilon_estimate`) made by calibrations."""


# --- public API ------------------------------------------------------------------------
def calibrate_noise(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: AccountantName,
) -> float:
    """Noise multiplier σ of Opacus' ``get_noise_multiplier(..., epsilon_tolerance=0.005)``:
    ``steps`` Poisson-subsampled Gaussian steps at rate ``sample_rate`` spend ε with
    ``target − 0.005 ≤ ε ≤ target`` at ``delta``.  ``target_epsilon = inf`` returns 0."""
    if math.isinf(target_epsilon):
        return 0.0
    if target_epsilon <= 0:
        raise ValueError(f"target epsilon must be > 0, got {target_epsilon}")
    inputs = {"search": "dp-sgd", "accountant": accountant, "target_epsilon": float(target_epsilon),
              "delta": float(delta), "sample_rate": float(sample_rate), "steps": int(steps)}
    if accountant == "prv":
        inputs["prv_search"] = PRV_SEARCH

    def search() -> float:
        def spent(sigma: float) -> float:
            return epsilon_of_history([(sigma, sample_rate, steps)], delta, accountant)

        curve = _MonotoneEpsilon(spent)
        guess = sample_rate * math.sqrt(2 * steps * math.log(1 / delta)) / target_epsilon
        if accountant == "prv":
            sigma = search_with_estimate(curve, _estimator([], sample_rate, steps, delta), target_epsilon,
                                         OPACUS_EPSILON_TOLERANCE, guess, OPACUS_MAX_SIGMA)
            if sigma is not None:
                return sigma
        return _checked(curve, target_epsilon, guess, lambda c: _opacus_bisection(c, target_epsilon))

    return _cached(inputs, search)


def calibrate_release_noise(
    history: list[tuple[float, float, int]],
    target_epsilon: float,
    delta: float,
    accountant: AccountantName,
    tolerance: float = RELEASE_TOLERANCE,
) -> float:
    """Smallest noise multiplier σ_s (RDP: within ``tolerance``, relative; PRV: composed ε
    within :data:`PRV_RELEASE_TOLERANCE` of the target, relative) of one extra Gaussian
    mechanism (q = 1) such that ``history`` composed with it spends at most
    ``target_epsilon``; the result is always on the safe side (ε ≤ target)."""
    if math.isinf(target_epsilon):
        return 0.0
    entries = [(float(s), float(q), int(t)) for s, q, t in history]
    inputs = {"search": "release", "accountant": accountant, "target_epsilon": float(target_epsilon),
              "delta": float(delta), "history": [list(entry) for entry in entries],
              "tolerance": float(tolerance)}
    if accountant == "prv":
        inputs["prv_search"] = PRV_SEARCH

    def spent(sigma: float) -> float:
        return epsilon_of_history([*entries, (sigma, 1.0, 1)], delta, accountant)

    def guess(base: float) -> float:
        # RDP at the optimal order α ≈ 1 + log(1/δ)/ε grows by α/(2σ²) with the release
        return math.sqrt((1 + math.log(1 / delta) / target_epsilon) / (2 * (target_epsilon - base)))

    def search() -> float:
        global evaluations
        curve = _MonotoneEpsilon(spent)
        ran = [entry for entry in entries if entry[2] > 0]  # as epsilon_of_history counts them
        if accountant == "prv" and all(s > 0 for s, _, _ in ran):
            band = PRV_RELEASE_TOLERANCE * target_epsilon
            base = _estimate(ran, delta) if ran else 0.0
            if base < target_epsilon - band:
                sigma = search_with_estimate(curve, _estimator(ran, 1.0, 1, delta), target_epsilon, band,
                                             guess(base), OPACUS_MAX_SIGMA, base, -2.0)
                if sigma is not None:
                    return sigma
        evaluations += 1
        base = epsilon_of_history(entries, delta, accountant)
        if base >= target_epsilon:
            raise ValueError(
                "the DP-SGD history already spends the whole budget; "
                "lower the share of ε given to DP-SGD"
            )
        return _checked(curve, target_epsilon, guess(base),
                        lambda c: _release_bisection(c, target_epsilon, tolerance), base, -2.0)

    return _cached(inputs, search)


def clear_memory_cache() -> None:
    """Write what is pending, then forget the in-process results (the file is read
    again on the next call)."""
    global _disk
    flush()
    _memory.clear()
    _disk = None


def cache_path() -> Path:
    """``$FEDSIM_CACHE_DIR/calibration.json``, default ``~/.cache/fedsim/calibration.json``."""
    root = os.environ.get("FEDSIM_CACHE_DIR") or Path.home() / ".cache" / "fedsim"
    return Path(root) / "calibration.json"


# --- the searches ----------------------------------------------------------------------
class _MonotoneEpsilon:
    """ε(σ), non-increasing in σ: every evaluation is kept, and "does ``rising`` hold
    at ε(σ)?" — ``rising`` a predicate that, once true, stays true for larger ε — is
    answered from kept evaluations when monotonicity settles it (``settle=False``:
    always evaluated, the plain search)."""

    def __init__(self, epsilon_of: Callable[[float], float], settle: bool = True) -> None:
        self.epsilon_of, self.settle = epsilon_of, settle
        self.points: dict[float, float] = {}

    def __call__(self, sigma: float) -> float:
        global evaluations
        if sigma not in self.points:
            evaluations += 1
            self.points[sigma] = self.epsilon_of(sigma)
        return self.points[sigma]

    def holds(self, sigma: float, rising: Callable[[float], bool]) -> bool:
        if sigma in self.points or not self.settle:
            return rising(self(sigma))
        for other, epsilon in self.points.items():
            if other >= sigma and rising(epsilon):
                return True  # ε(σ) ≥ ε(other)
            if other <= sigma and not rising(epsilon):
                return False  # ε(σ) ≤ ε(other)
        return rising(self(sigma))


def _opacus_bisection(curve: _MonotoneEpsilon, target: float) -> float:
    """``opacus.accountants.utils.get_noise_multiplier``'s search, step for step."""
    sigma_low: float
    sigma_high: float
    sigma_low, sigma_high = 0, 10  # ints, as in Opacus
    while True:
        sigma_high = 2 * sigma_high
        if sigma_high > OPACUS_MAX_SIGMA:
            raise ValueError("The privacy budget is too low.")
        if not curve.holds(sigma_high, lambda e: e > target):
            break
    while not curve.holds(sigma_high, lambda e: target - e <= OPACUS_EPSILON_TOLERANCE):
        sigma = (sigma_low + sigma_high) / 2
        if not curve.holds(sigma, lambda e: e >= target):  # eps < target
            sigma_high = sigma
        else:
            sigma_low = sigma
    return float(sigma_high)


def _release_bisection(curve: _MonotoneEpsilon, target: float, tolerance: float) -> float:
    """The release search (doubling from [0.01, 1], then bisection), step for step."""
    low, high = 1e-2, 1.0
    while curve.holds(high, lambda e: e > target):
        low, high = high, high * 2.0
        if high > 1e6:
            raise ValueError("could not calibrate the statistics release noise")
    while high - low > tolerance * high:
        middle = 0.5 * (low + high)
        if curve.holds(middle, lambda e: e > target):
            low = middle
        else:
            high = middle
    return high


def _checked(curve: _MonotoneEpsilon, target: float, guess: float,
             bisection: Callable[[_MonotoneEpsilon], float], base: float = 0.0, slope: float = -1.0) -> float:
    """Run ``bisection`` on evaluations pre-placed near each level; if the result does
    not spend ≤ ``target`` when evaluated (ε not monotone), run the plain bisection."""
    _bracket_root(curve, target, guess, base, slope)
    sigma = bisection(curve)
    if curve(sigma) <= target:
        return sigma
    return bisection(_MonotoneEpsilon(curve.epsilon_of, settle=False))


def _bracket_root(curve: _MonotoneEpsilon, level: float, guess: float, base: float = 0.0,
                  slope: float = -1.0, max_evaluations: int = 10) -> None:
    """Evaluate ``curve`` near the σ where ε(σ) = ``level``
    (:func:`~fedsim.privacy.log_root.bracket_log_root` on log(ε − base) − log(level − base),
    to a bracket of relative width :data:`PREWARM_RELATIVE_WIDTH`)."""
    bracket_log_root(lambda sigma: log_residual(curve(sigma), level, base), guess, slope,
                     PREWARM_RELATIVE_WIDTH, max_evaluations, OPACUS_MAX_SIGMA)


def _estimate(entries: list[tuple[float, float, int]], delta: float) -> float:
    global estimate_evaluations
    estimate_evaluations += 1
    return prv_epsilon_estimate(entries, delta)


def _estimator(entries: list[tuple[float, float, int]], sample_rate: float, steps: int,
               delta: float) -> Callable[[float], float]:
    """σ ↦ the PRV estimate of ``entries`` followed by ``steps`` steps of σ at ``sample_rate``."""
    return lambda sigma: _estimate([*entries, (sigma, sample_rate, steps)], delta)


# --- caching ---------------------------------------------------------------------------
def _cached(inputs: dict[str, Any], search: Callable[[], float]) -> float:
    key = json.dumps(inputs, sort_keys=True)
    if key in _memory:
        return _memory[key]
    record = _disk_records().get(key)
    if record is not None:
        _memory[key] = float(record["sigma"])
        return _memory[key]
    sigma = float(search())
    _memory[key] = sigma
    _store(key, inputs, sigma)
    return sigma


def _header() -> dict[str, Any]:
    return {"format": CACHE_FORMAT, "opacus": opacus.__version__}


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    """Records of the cache file, keyed by their own inputs; {} (with a warning) when
    the file is unreadable, malformed or of another version."""
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if {k: content.get(k) for k in _header()} != _header():
            warnings.warn(f"calibration cache {path} is of another version; ignoring it", stacklevel=3)
            return {}
        records = {}
        for record in content["records"]:
            sigma = float(record["sigma"])
            if not (isinstance(record["inputs"], dict) and math.isfinite(sigma) and sigma >= 0):
                raise ValueError("bad record")
            records[json.dumps(record["inputs"], sort_keys=True)] = {"inputs": record["inputs"], "sigma": sigma}
        return records
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        warnings.warn(f"calibration cache {path} is unreadable ({error}); ignoring it", stacklevel=3)
        return {}


def _disk_records() -> dict[str, dict[str, Any]]:
    """The records of the current cache file (read once per path)."""
    global _disk, _disk_path
    path = cache_path()
    if _disk is None or _disk_path != path:
        _disk, _disk_path = _read_file(path), path
    return _disk


def _store(key: str, inputs: dict[str, Any], sigma: float) -> None:
    """Keep one new record and write the file, at most once per ``WRITE_INTERVAL_S``
    (and at exit, or on :func:`flush`): a federation of thousands of clients does not
    rewrite the file thousands of times."""
    record = {"inputs": inputs, "sigma": sigma}
    _disk_records()[key] = record
    _pending.setdefault(cache_path(), {})[key] = record
    if time.monotonic() - _last_write >= WRITE_INTERVAL_S:
        flush()


def flush() -> None:
    """Write the records not yet written, merged with what the file holds now (other
    processes may have added some), atomically."""
    global _last_write
    for path, records in list(_pending.items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bad file was already reported when read
            merged = _read_file(path)
        merged.update(records)
        try:
            write_json_atomic({**_header(), "records": list(merged.values())}, path, indent=None)
        except OSError as error:
            warnings.warn(f"could not write the calibration cache {path} ({error})", stacklevel=2)
        del _pending[path]
    _last_write = time.monotonic()


atexit.register(flush)

__all__ = ["calibrate_noise", "calibrate_release_noise", "clear_memory_cache", "cache_path", "flush"]
