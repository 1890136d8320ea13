"""The converged probe's L-BFGS fits with OpenBLAS' default thread pool vs one BLAS thread.

``fedsim.evaluation.blas.one_blas_thread`` runs the probes' BLAS on one thread; this
script measures why (README "Performance", *one BLAS thread for the probes*).  For each
size ``n × d`` (K = 11 classes, Gaussian features, ``C = 1``) it fits
:func:`fedsim.evaluation.probe.fit_logistic` with the limit switched off (the thread pool
as the process found it: one thread per core unless ``OMP_NUM_THREADS`` /
``OPENBLAS_NUM_THREADS`` say otherwise) and on, alternately, ``--repeats`` times, and
prints the median milliseconds per L-BFGS iteration of each and their ratio; both fits
are checked to reach the same optimum.

    python benchmarks/probe_threads.py [--repeats 5] [--sizes 379x384 2000x384 10000x768]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from unittest import mock

import numpy as np


def time_fit(x: np.ndarray, y: np.ndarray, limited: bool) -> tuple[float, np.ndarray]:
    """Milliseconds per L-BFGS iteration of one fit, and its weights."""
    from fedsim.evaluation import probe

    patch = contextlib.nullcontext() if limited else mock.patch.object(probe, "one_blas_thread",
                                                                        contextlib.nullcontext)
    with patch:
        started = time.perf_counter()
        fitted = probe.fit_logistic(x, y, 11, 1.0, max_iter=100)
        seconds = time.perf_counter() - started
    return 1e3 * seconds / max(fitted.iterations, 1), fitted.weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", nargs="+", default=["379x384", "2000x384", "10000x768"])
    args = parser.parse_args()
    from threadpoolctl import threadpool_info

    pools = sorted({(info["internal_api"], info["num_threads"]) for info in threadpool_info()})
    print(f"thread pools at start: {pools}\n")
    print("| n × d | default pool ms/iteration | one BLAS thread ms/iteration | default ÷ one |")
    print("|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        n, d = (int(part) for part in size.split("x"))
        x = rng.standard_normal((n, d)).astype(np.float32)
        y = rng.integers(0, 11, n)
        time_fit(x, y, True)  # imports and first-touch out of the timings
        default, limited = [], []
        for _ in range(args.repeats):
            (ms_default, w_default), (ms_limited, w_limited) = time_fit(x, y, False), time_fit(x, y, True)
            assert np.allclose(w_default, w_limited, atol=1e-8), "the two fits should reach the same optimum"
            default.append(ms_default)
            limited.append(ms_limited)
        a, b = statistics.median(default), statistics.median(limited)
        print(f"| {n:,} × {d} | {a:.2f} | {b:.2f} | {a / b:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
