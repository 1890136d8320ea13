"""fedsim.commands.worker_pool: results from spawned workers, their threads, their errors, the job count."""

from __future__ import annotations

import os
import time

import pytest

from fedsim.commands import worker_pool
from fedsim.commands.worker_pool import check_jobs, resolve_jobs, run_in_workers, worker_threads
from fedsim.errors import UserError


def square_with_threads(item: int) -> tuple[int, int, int]:
    import torch

    return item * item, torch.get_num_threads(), os.getpid()


def fail_or_sleep(item: str) -> str:
    if item == "fail":
        raise UserError("--option fail is not valid; give another value.")
    time.sleep(60)
    return item


def test_every_item_once_from_other_processes_with_their_threads():
    results = dict(run_in_workers(square_with_threads, range(6), jobs=2, threads=1))
    assert {item: value[0] for item, value in results.items()} == {i: i * i for i in range(6)}
    assert {value[1] for value in results.values()} == {1}
    assert os.getpid() not in {value[2] for value in results.values()}


def test_a_workers_error_is_raised_in_the_parent_and_the_rest_is_stopped():
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"^--option fail is not valid; give another value\.$"):
        list(run_in_workers(fail_or_sleep, ["sleep", "fail", "sleep", "sleep"], jobs=2, threads=1))
    assert time.perf_counter() - started < 30  # the running sleeper was stopped, the queued ones never ran


def test_job_counts(monkeypatch):
    monkeypatch.setattr(worker_pool, "available_cpus", lambda: 8)
    assert resolve_jobs("auto", 0, runs=100) == 8      # one thread per run
    assert resolve_jobs("auto", 2, runs=100) == 4
    assert resolve_jobs("auto", 16, runs=100) == 1
    assert resolve_jobs("auto", 1, runs=3) == 3         # never more workers than runs
    assert resolve_jobs(5, 1, runs=100) == 5 and resolve_jobs(5, 1, runs=0) == 1
    assert worker_threads(3, 0) == 2 and worker_threads(3, 4) == 4 and worker_threads(16, 0) == 1
    for bad in (0, -1, True, "two"):
        with pytest.raises(UserError, match="--jobs must be an integer >= 1 or auto"):
            check_jobs(bad, "--jobs")
    check_jobs("auto", "--jobs")
    check_jobs(3, "--jobs")
