"""The Tune function trainable: one trial = one whole federation (``run_training``).

Every round's metrics row is reported to Tune (``final = 0``); the run's summary —
the Table-1 metrics (acc/bacc/f1 mean ± std across clients), ε spent, privacy mode —
is the trial's last report (``final = 1``).  The run's own console output (banner,
privacy ledger, scores) goes to ``train.log`` in its run directory, so the sweep's
console shows only the sweep's progress.

A trial rerun after an interruption (sweep resumed, node lost) continues from the
latest checkpoint in its run directory (fedsim's ``--resume``: the lost rounds are
recomputed exactly, the ledger is unchanged) when that checkpoint holds the same
configuration; the checkpoint's earlier rounds are reported to Tune first, so the
trial's per-round history stays complete.  Rows reach Tune through
:class:`TuneReporter`, a :class:`~fedsim.callbacks.RunCallback` of the run.

This module must stay importable by name on every Ray worker (``sweeps.trial``):
Tune pickles ``run_trial`` by reference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import traceback
from pathlib import Path

import torch

from fedsim.callbacks import RunCallback
from fedsim.checkpoint import checkpoint_root, load_checkpoint
from fedsim.commands.resume import results_config
from fedsim.commands.training_run import run_training
from fedsim.outputs import config_dict
from sweeps.grid import trial_command


def scalars(row: dict) -> dict:
    """The entries of ``row`` that Tune can log: numbers, strings and booleans (None dropped)."""
    kept: dict[str, object] = {}
    for key, value in row.items():
        if isinstance(value, (bool, str)):
            kept[key] = value
        elif isinstance(value, numbers.Number):
            kept[key] = value.item() if hasattr(value, "item") else value
    return kept


def with_checkpoint(command):
    """``(command, earlier_rows)``: ``command`` set to resume from its run directory's latest
    checkpoint, and that checkpoint's round rows, when the checkpoint was written by the
    same configuration (every option except runtime ones); else ``(command, [])``."""
    if not (checkpoint_root(command.out) / "latest.json").is_file():
        return command, []
    try:
        checkpoint = load_checkpoint(command.out)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint: run from the start
        return command, []

    if results_config(config_dict(checkpoint.command)) != results_config(config_dict(command)):
        return command, []
    return dataclasses.replace(command, resume=command.out), list(checkpoint.round_metrics)


class TuneReporter(RunCallback):
    """Reports every round's row to Ray Tune (``final = 0``)."""

    def __init__(self, report) -> None:
        self.report = report  # ray.tune.report, given by the trial (Ray is imported only there)

    def on_round_end(self, round_index: int, row: dict, result) -> None:
        self.report({**scalars(row), "final": 0})


def run_trial(config: dict, *, base, runs_dir: str, backend: str = "local", threads: int = 1, ray=None) -> None:
    """Run the federation of trial ``config`` (see :func:`sweeps.grid.trial_command`)."""
    from ray import tune  # only on a Tune worker: importing this module must not start Ray's import

    torch.set_num_threads(threads)
    command = trial_command(base, config, Path(runs_dir), backend, threads, ray)
    command.out.mkdir(parents=True, exist_ok=True)
    command, earlier = with_checkpoint(command)
    for row in earlier:
        tune.report({**scalars(row), "final": 0})

    with open(command.out / "train.log", "a", encoding="utf-8") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                summary = run_training(command, [TuneReporter(tune.report)])
            except BaseException:
                traceback.print_exc(file=log)
                raise
    tune.report({**scalars(summary), "round": command.training.rounds, "final": 1,
                 "run_dir": str(command.out)})
