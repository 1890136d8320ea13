r"""Stratified train/validation/test splits of one client's records.

For each class with ``n_c`` records (shuffled)::

    n_test = round(f_test · n_c)
    n_val  = round(f_val · (n_c − n_test))
    n_train = n_c − n_test − n_val

with round-half-up, and at least one record always left in train (so a class
with a single record goes to train).  The defaults ``f_test = f_val = 0.2`` give
the reference protocol's 64 / 16 / 20 split.  Per-class rounding keeps every
split's label mix as close to the client's as integers allow.
"""

from __future__ import annotations

import numpy as np

from fedsim.errors import UserError
from fedsim.seeding import as_rng


def _round_half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


def check_fractions(test_fraction: float, val_fraction: float) -> None:
    """Both fractions must lie in [0, 1)."""
    for option, value in (("test-fraction", test_fraction), ("val-fraction", val_fraction)):
        if not (np.isfinite(value) and 0.0 <= value < 1.0):
            raise UserError(f"--data.{option} is {value!r}; it must be a number in [0, 1).")


def split_sizes(n_c: int, test_fraction: float, val_fraction: float) -> tuple[int, int, int]:
    """``(n_train, n_val, n_test)`` for one class of ``n_c`` records (formulas above)."""
    n_test = min(_round_half_up(test_fraction * n_c), max(n_c - 1, 0))
    n_val = min(_round_half_up(val_fraction * (n_c - n_test)), max(n_c - 1 - n_test, 0))
    return n_c - n_test - n_val, n_val, n_test


def stratified_split(
    labels: np.ndarray,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions ``(train, val, test)`` within ``labels``: sorted, disjoint, complete.

    ``rng`` (a Generator or an int seed) is required; the result is a
    deterministic function of it.
    """
    check_fractions(test_fraction, val_fraction)
    generator = as_rng(rng, "stratified_split's rng")
    labels = np.asarray(labels)
    train, val, test = [], [], []
    for c in np.unique(labels):
        members = generator.permutation(np.flatnonzero(labels == c))
        n_train, n_val, _ = split_sizes(len(members), test_fraction, val_fraction)
        train.append(members[:n_train])
        val.append(members[n_train : n_train + n_val])
        test.append(members[n_train + n_val :])

    def done(parts: list[np.ndarray]) -> np.ndarray:
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    return done(train), done(val), done(test)
