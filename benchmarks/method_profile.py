"""Benchmark: where one training run of a method spends its time (cProfile, one thread).

Runs ``python -m fedsim.run train`` in this process under :mod:`cProfile` (backend
``local``, one torch thread, no progress bar, no checkpoints) and prints the wall time
and the ``--top`` functions by cumulative and by own time.  Default: one DP-CGAN run on
``synthetic-organs`` with 3 rounds (issue #17: the Table 1 row that dominates the table).
Arguments after ``--`` go to the train command unchanged (e.g. ``--privacy.reproducible-noise``
to compare run records before and after a change; secure noise, the default, is what the
table pays for).  ``--no-profile`` times the run without the profiler's overhead.

    python benchmarks/method_profile.py [--algorithm dp-cgan] [--rounds 3] [--top 30] \\
        [--no-profile] [-- --privacy.reproducible-noise --out /tmp/run]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time

import torch

from fedsim.run import main as run_main


def train_args(algorithm: str, dataset: str, rounds: int, extra: list[str]) -> list[str]:
    """The train command of one profiled run (``extra`` last, so it may override the rest)."""
    return ["train", "--algorithm", algorithm, "--data.dataset", dataset, "--training.rounds", str(rounds),
            "--backend", "local", "--threads", "1", "--no-progress", "--checkpoint-every", "0",
            "--data.partition-seed", "0", *extra]


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", default="dp-cgan")
    parser.add_argument("--dataset", default="synthetic-organs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-profile", action="store_true", help="time the run without cProfile")
    args = parser.parse_args(own)
    torch.set_num_threads(1)
    command = train_args(args.algorithm, args.dataset, args.rounds, extra)
    profiler = None if args.no_profile else cProfile.Profile()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    code = run_main(command)
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"\n{args.algorithm} on {args.dataset}, {args.rounds} rounds: {elapsed:.1f} s (exit {code})")
    if profiler is not None:
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(args.top)
            print(f"--- top {args.top} by {key} ---")
            print(out.getvalue().split("\n\n", 2)[-1])


if __name__ == "__main__":
    main()
