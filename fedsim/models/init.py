"""Seeded construction of ``nn.Module``s without touching global RNG state.

PyTorch's layer initialisers draw from the global generator.  :func:`seeded` forks
the global state, seeds it from the run seed and component tags, and restores it on
exit, so a model's initial weights depend only on (seed, tags)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from fedsim.seeding import seed_sequence


@contextlib.contextmanager
def seeded(seed: int, *tags: int | str) -> Iterator[None]:
    """Run the block with the global torch RNG seeded from ``(seed, *tags)``, then restore it."""
    state = seed_sequence(seed, *tags).generate_state(2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(((int(state[0]) << 32) | int(state[1])) & (2**63 - 1))
        yield
