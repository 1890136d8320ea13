"""Seed derivation: independent, reproducible streams per component."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsim.seeding import as_rng, numpy_rng, torch_generator


def test_numpy_streams_are_reproducible_and_tag_dependent():
    assert numpy_rng(0, "partition").random() == numpy_rng(0, "partition").random()
    draws = {numpy_rng(0).random(), numpy_rng(1).random(), numpy_rng(0, "a").random(),
             numpy_rng(0, "b").random(), numpy_rng(0, 3).random(), numpy_rng(0, "3").random(),
             numpy_rng(0, "split", 1).random(), numpy_rng(0, "split", 2).random()}
    assert len(draws) == 8
    assert np.isfinite(numpy_rng(-5, "x").random())


def test_torch_generators_are_reproducible_and_tag_dependent():
    a = torch.rand(3, generator=torch_generator(0, "client", 1))
    b = torch.rand(3, generator=torch_generator(0, "client", 1))
    c = torch.rand(3, generator=torch_generator(0, "client", 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_as_rng_refuses_global_state():
    generator = np.random.default_rng(0)
    assert as_rng(generator) is generator
    assert as_rng(4).random() == numpy_rng(4).random()
    with pytest.raises(TypeError):
        as_rng(None)
