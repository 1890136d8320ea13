"""``one_blas_thread``: every BLAS pool at one thread inside, restored after, and the probe
computes under it what it computes under an explicit one-thread limit."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from fedsim.evaluation.blas import one_blas_thread
from fedsim.evaluation.probe import fit_logistic


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_inside_every_blas_pool_has_one_thread_and_the_pools_are_restored_after():
    import scipy.optimize  # noqa: F401  (SciPy's BLAS loaded, as when a probe runs)

    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        assert before and all(n == 2 for n in before)
        with one_blas_thread():
            assert all(n == 1 for n in blas_threads())
        assert blas_threads() == before


def test_the_probe_fit_is_the_one_thread_fit_bit_for_bit():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((600, 96)).astype(np.float32), rng.integers(0, 5, 600)
    with threadpool_limits(2, user_api="blas"):
        fitted = fit_logistic(x, y, 5, 0.3)
        probabilities = fitted.probabilities(x)
    with threadpool_limits(1, user_api="blas"):
        alone = fit_logistic(x, y, 5, 0.3)
        np.testing.assert_array_equal(fitted.weight, alone.weight)
        np.testing.assert_array_equal(probabilities, alone.probabilities(x))
