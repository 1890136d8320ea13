"""Independent runs in parallel worker processes (``table --jobs N``, the privacy–utility benchmark).

:func:`run_in_workers` calls one module-level function on each item in ``jobs``
processes started with ``spawn`` (no fork of a process that already runs torch threads),
each with its share of the CPUs as torch (and BLAS) threads, and yields ``(item,
result)`` in order of completion, in the parent: the caller writes every result, so
files are written by one process only.  A worker's exception is raised in the parent
as the same exception the function raised (a :class:`~fedsim.errors.UserError` stays
one), after the items not yet started are cancelled and the workers are stopped; the
same happens on Ctrl-C or when the caller stops iterating.  Workers ignore Ctrl-C (the
parent stops them), so an interrupt prints one line, not one traceback per worker.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator, Literal, TypeVar

from fedsim.errors import UserError

Item = TypeVar("Item")
Result = TypeVar("Result")
Jobs = int | Literal["auto"]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_jobs(jobs: Jobs, option: str) -> None:
    """A :class:`~fedsim.errors.UserError` naming ``option`` unless ``jobs`` is ``auto`` or an integer >= 1."""
    if jobs != "auto" and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise UserError(f"{option} must be an integer >= 1 or auto, got {jobs!r}.")


def resolve_jobs(jobs: Jobs, threads: int, runs: int) -> int:
    """Worker processes for ``runs`` runs of ``threads`` torch threads each (0: all cores
    when sequential, one thread per run in parallel): ``jobs``, or for ``auto`` one per
    ``threads`` CPUs; never more than the runs, at least 1."""
    wanted = available_cpus() // max(threads, 1) if jobs == "auto" else jobs
    return max(1, min(wanted, runs))


def worker_threads(jobs: int, threads: int) -> int:
    """torch threads of each of ``jobs`` workers: ``threads``, or (0) an equal share of the CPUs."""
    return threads if threads > 0 else max(1, available_cpus() // jobs)


def _start_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # a dependency of scikit-learn

    torch.set_num_threads(threads)
    threadpool_limits(threads)  # numpy's BLAS


def _stop(executor: ProcessPoolExecutor, futures: Iterable[Future]) -> None:
    """Cancel the items not started and end the workers (those running items are killed)."""
    for future in futures:
        future.cancel()
    terminate = getattr(executor, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
    else:
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            process.terminate()
    executor.shutdown(wait=True, cancel_futures=True)


def run_in_workers(function: Callable[[Item], Result], items: Iterable[Item], jobs: int,
                   threads: int) -> Iterator[tuple[Item, Result]]:
    """``(item, function(item))`` for every item, computed in ``jobs`` spawned processes of
    ``threads`` torch threads each, in order of completion (module docstring).
    ``function`` must be importable by name (a module-level function)."""
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                   initializer=_start_worker, initargs=(threads,))
    pending: dict[Future, Item] = {}
    try:
        pending = {executor.submit(function, item): item for item in items}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: f.exception() is not None):  # save the finished first
                item = pending.pop(future)
                yield item, future.result()  # a worker's exception is raised here, in the parent
    finally:
        if pending:
            _stop(executor, pending)
        else:
            executor.shutdown(wait=True)
