"""One BLAS thread for the probes' NumPy/SciPy linear algebra (:func:`one_blas_thread`).

The converged probe (:mod:`fedsim.evaluation.probe`) is full-batch L-BFGS on small
problems: per iteration two ``(K × d) · (d × n)`` products (K ≈ 10 classes, d = 384 or
768, n = a client's records) and SciPy's L-BFGS-B update.  With OpenBLAS' default thread
pool (one thread per core) each of those small products wakes and synchronises the
pool, and on this project's 2-core machine that costs far more than the product:
``python benchmarks/probe_threads.py`` measured an L-BFGS iteration at 7.9× (n = 379,
d = 384), 3.2× (n = 2,000) and 1.5× (n = 10,000, d = 768) the single-threaded time
(README "Performance").
Parallelism in fedsim is across clients, runs and workers (Ray actors, ``--jobs``), not
inside one probe, so the probes run their BLAS on one thread.

It also makes the probes' numbers independent of the machine's core count: OpenBLAS
splits a large product differently by thread count, and the last bits of the sums then
differ (≈ 1e-13 for a 3,000 × 768 fit), which can flip a near-tie of the λ or C choice.
With one thread a probe is computed exactly as under ``OMP_NUM_THREADS=1``, which is how
the committed tables were run.

The limit covers the BLAS libraries (NumPy's and SciPy's OpenBLAS, MKL, BLIS), not
OpenMP: torch's intra-op threads (``--threads``) are untouched.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator


@functools.cache
def _controller():
    """threadpoolctl's view of the loaded BLAS libraries, built once (≈ 1 ms) after SciPy's
    optimisers are imported so that their BLAS is seen too; entering a limit from it
    then costs microseconds."""
    import scipy.optimize  # noqa: F401  (loads SciPy's BLAS before the libraries are listed)
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with every BLAS library limited to one thread (restored after)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
