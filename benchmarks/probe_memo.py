"""Benchmark: a table's runs with and without the per-process memo of local probes.

Every method and bound of a table evaluated on one federation × seed trains the same
local probes (:func:`fedsim.evaluation.downstream.local_probe`); the memo fits them once
per process.  This runs the plan of ``python -m fedsim.run table --quick`` (one seed,
IID only, the given methods and bounds) in this process, one torch thread, once with the
memo off (``LOCAL_PROBE_CACHE_SIZE = 0``) and once on, alternating for ``--repeats``
rounds, and prints each arm's wall times, their medians and the ratio; then checks that
both arms produced the same per-client rows (the memo must not change results; the runs
use seeded DP noise, ``--privacy.reproducible-noise``, for that comparison).

    python benchmarks/probe_memo.py [--dataset synthetic-organs] [--repeats 1] \\
        [--methods fedavg dp-fedavg dp-stats] [--bounds local-only pooled-real]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from fedsim.commands import table_run
from fedsim.commands.table import RUN_DEFAULTS, TableCommand
from fedsim.evaluation import downstream


def run_plan(table: TableCommand, memo: bool) -> tuple[float, list[list[dict]]]:
    """Wall time of every run of ``table``'s plan with the memo on or off, and each run's client rows."""
    downstream._local_probes.clear()
    downstream.LOCAL_PROBE_CACHE_SIZE = 256 if memo else 0
    started = time.perf_counter()
    rows = [table_run.run_one(planned)["clients"] for planned in table_run.plan(table)]
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic-organs")
    parser.add_argument("--methods", nargs="+", default=["fedavg", "dp-fedavg", "dp-stats"])
    parser.add_argument("--bounds", nargs="+", default=["local-only", "pooled-real"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # seeded DP noise, so that the two arms' results can be compared (secure noise differs per run)
    run = replace(RUN_DEFAULTS, data=replace(RUN_DEFAULTS.data, dataset=args.dataset), threads=1, progress=False,
                  privacy=replace(RUN_DEFAULTS.privacy, reproducible_noise=True))
    table = TableCommand(run=run, methods=tuple(args.methods), bounds=tuple(args.bounds), alphas=(), quick=True,
                         progress=False)
    runs = len(table_run.plan(table))
    print(f"{args.dataset}: {runs} runs ({', '.join(args.methods + args.bounds)}), IID, seed 0, quick; "
          f"{args.repeats} repeat(s), memo off / on alternating")
    seconds: dict[bool, list[float]] = {False: [], True: []}
    results: dict[bool, list[list[dict]]] = {}
    for repeat in range(args.repeats):
        for memo in (False, True):
            elapsed, results[memo] = run_plan(table, memo)
            seconds[memo].append(elapsed)
            print(f"  repeat {repeat}: memo {'on ' if memo else 'off'} {elapsed:7.1f} s", flush=True)
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"median: memo off {off:.1f} s, on {on:.1f} s, off / on = {off / on:.2f}×")
    print("same per-client rows:", results[False] == results[True])


if __name__ == "__main__":
    main()
