"""Sweep progress on the console: trials done/total, running, errored, elapsed time and ETA.

Ray ≥ 2.5's new console output ignores ``CLIReporter`` unless ``RAY_AIR_NEW_OUTPUT=0``,
so progress is a :class:`ray.tune.Callback` instead.  The ETA is the remaining trials
divided by the rate at which trials finished in *this* session (trials finished before a
resume do not inflate the rate).  Lines go to stderr; the callback holds no open handle,
so it pickles with the Tuner's state (it is restored with the experiment)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray.tune import Callback

FINISHED = ("TERMINATED", "ERROR")


def format_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def progress_line(total: int, finished: int, errored: int, running: int, elapsed: float,
                  finished_before: int) -> str:
    """One progress line; the ETA extrapolates this session's trial throughput."""
    line = f"sweep: {finished}/{total} trials done"
    if errored:
        line += f" ({errored} errored)"
    line += f", {running} running, {format_duration(elapsed)} elapsed"
    new = finished - finished_before
    if finished >= total:
        line += ", finished"
    elif new > 0:
        line += f", ETA {format_duration(elapsed / new * (total - finished))}"
    else:
        line += ", ETA after the first trial ends"
    return line


class SweepProgress(Callback):
    """Prints :func:`progress_line` every ``interval`` seconds and whenever a trial ends."""

    def __init__(self, total: int, interval: float = 30.0) -> None:
        self.total, self.interval = total, interval
        self._reset()

    def _reset(self) -> None:
        self.started: float | None = None
        self.finished_before: int | None = None
        self.last_print = -math.inf  # the first step prints at once
        self.ended: set[str] = set()
        self.errored: set[str] = set()

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self._reset()
        self.started = time.monotonic()

    def _print(self, trials, force: bool) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        done = {t.trial_id for t in trials if t.status in FINISHED} | self.ended
        if self.finished_before is None:
            self.finished_before = len(done - self.ended)
        if not force and now - self.last_print < self.interval:
            return
        self.last_print = now
        errored = len({t.trial_id for t in trials if t.status == "ERROR"} | self.errored)
        running = sum(1 for t in trials if t.status == "RUNNING" and t.trial_id not in self.ended)
        print(progress_line(self.total, len(done), errored, running, now - self.started,
                            self.finished_before), file=sys.stderr, flush=True)

    def on_step_end(self, iteration, trials, **info) -> None:
        self._print(trials, force=False)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.ended.add(trial.trial_id)
        self._print(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.ended.add(trial.trial_id)
        self.errored.add(trial.trial_id)
        where = getattr(trial, "path", None)  # the trial's directory in the sweep's storage
        details = f" (traceback: {where}/error.txt)" if where else ""
        print(f"sweep: trial {trial} errored{details}", file=sys.stderr, flush=True)
        self._print(trials, force=True)
