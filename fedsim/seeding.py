"""Seed derivation: one run seed, an independent random stream per component.

Every component derives its own generator from the run seed and a few *tags*
naming the component (``numpy_rng(seed, "partition")``,
``torch_generator(seed, "client", 3)``).  Tags go through
:class:`numpy.random.SeedSequence`, whose hashing makes streams with different
tags statistically independent, so adding a component never shifts the random
numbers of another one.  Nothing here touches global RNG state.

Tags are mapped to non-negative integers: an ``int`` as itself (negative ones by
two's complement modulo 2**128), a ``str`` by CRC-32 of its UTF-8 bytes plus a
2**32 offset, so that ``"3"`` and ``3`` stay different.  CRC-32 is stable across
processes and Python versions (unlike ``hash``), so a seed reproduces everywhere.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: the data layer does not need it
    import torch

_MOD = 2**128
_STR_OFFSET = 2**32


def _tag_to_int(tag: int | str) -> int:
    """Map one seed or tag to the non-negative integer entropy SeedSequence wants."""
    if isinstance(tag, (bool, np.bool_)):
        return int(tag)
    if isinstance(tag, (int, np.integer)):
        return int(tag) % _MOD
    if isinstance(tag, str):
        return _STR_OFFSET + zlib.crc32(tag.encode("utf-8"))
    raise TypeError(f"seed tags must be int or str, got {type(tag).__name__}")


def seed_sequence(seed: int, *tags: int | str) -> np.random.SeedSequence:
    """The :class:`~numpy.random.SeedSequence` of ``seed`` and ``tags``."""
    return np.random.SeedSequence([_tag_to_int(seed), *(_tag_to_int(t) for t in tags)])


def numpy_rng(seed: int, *tags: int | str) -> np.random.Generator:
    """A fresh NumPy generator for the component named by ``tags`` of run ``seed``."""
    return np.random.default_rng(seed_sequence(seed, *tags))


def torch_generator(seed: int, *tags: int | str) -> "torch.Generator":
    """A fresh CPU ``torch.Generator`` for the component named by ``tags`` of run ``seed``.

    Its 63-bit seed is drawn from the same SeedSequence as :func:`numpy_rng`
    would use, so the NumPy and torch streams of one component are derived alike.
    """
    import torch

    state = seed_sequence(seed, *tags).generate_state(2, dtype=np.uint32)
    torch_seed = ((int(state[0]) << 32) | int(state[1])) & (2**63 - 1)
    generator = torch.Generator()
    generator.manual_seed(torch_seed)
    return generator


def as_rng(rng: np.random.Generator | int | None, what: str = "rng") -> np.random.Generator:
    """Accept a Generator or an int seed; refuse ``None`` (no global RNG state)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return numpy_rng(int(rng))
    raise TypeError(f"{what} must be a numpy.random.Generator or an int seed, got {rng!r}")
