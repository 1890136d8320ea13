"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray (2 CPUs, no dashboard) for every test that needs Ray (runtime and
    sweep tests); started on first use, shut down at the end of the session.  Code under
    test that finds Ray initialised uses it as it is and leaves it running."""
    ray = pytest.importorskip("ray")
    import logging

    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, num_cpus=2, logging_level=logging.WARNING,
                 log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True, scope="session")
def single_torch_thread():
    """Tests use tiny tensors: one torch thread (two threads spinning on a shared 2-core
    machine can make them several times slower).  Session-scoped, so module fixtures
    run with it too: bitwise comparisons need the same thread count on both sides."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def one_torch_thread_after_each_test():
    """A test that changes the thread count (a CLI run with --threads) does not leak it."""
    yield
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def calibration_cache_in_a_temporary_directory(tmp_path_factory):
    """Noise calibrations are cached on disk (fedsim.privacy.calibration); tests never
    read or write the user's cache."""
    import os

    previous = os.environ.get("FEDSIM_CACHE_DIR")
    os.environ["FEDSIM_CACHE_DIR"] = str(tmp_path_factory.mktemp("fedsim-cache"))
    yield
    if previous is None:
        os.environ.pop("FEDSIM_CACHE_DIR", None)
    else:
        os.environ["FEDSIM_CACHE_DIR"] = previous
