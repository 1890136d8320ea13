"""Option checks shared by every configuration dataclass.

A config's ``validate(prefix)`` lists its rules and hands them to :func:`check`;
``prefix`` is where the config sits on the command line (``"--fedhypevae."`` under
``train``, ``"--run.fedhypevae."`` under ``table``), so every message names the option
exactly as the user typed it."""

from __future__ import annotations

import math
from typing import Iterable

from fedsim.errors import UserError


def option_name(prefix: str, field: str) -> str:
    """``prefix`` + the field's CLI spelling (``meta_codes`` → ``--fedhypevae.meta-codes``)."""
    return prefix + field.replace("_", "-")


def check(config, prefix: str, rules: Iterable[tuple[str, bool, str]]) -> None:
    """Raise a one-sentence :class:`UserError` for the first ``(field, ok, valid)`` rule
    of ``config`` that fails, e.g. ``--fedhypevae.meta-codes must be an integer >= 1, got 0.``"""
    for field, ok, valid in rules:
        if not ok:
            raise UserError(f"{option_name(prefix, field)} must be {valid}, got {getattr(config, field)!r}.")


def finite(value: float) -> bool:
    """True for a finite number (not NaN, not ±inf)."""
    return math.isfinite(value)
