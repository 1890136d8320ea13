"""Callbacks of the round driver :func:`fedsim.simulation.run_federation`.

The shape follows pfl-research's ``TrainingProcessCallback`` (``on_train_begin``,
``after_central_iteration``, ``on_train_end``): a :class:`RunCallback` subclass
overrides the hooks it needs, the others do nothing.  For one run the driver calls,
for every callback in list order,

* ``on_start(start_round, result)`` once, before the first round it runs
  (``start_round > 0`` and ``result`` holding the earlier rows when resumed),
* ``on_round_start(round_index, ids)`` before every round, once its clients ``ids``
  are drawn and before any of them runs (the privacy journal writes it down),
* ``on_round_end(round_index, row, result)`` after every round, once the round's row
  (:func:`~fedsim.simulation.run_federation` documents its keys) is in
  ``result.round_metrics``,
* ``on_release(rounds_done, result)`` right after the clients' DP releases (before round 0
  for a warm start, after the last round otherwise) and before the server reads them,
* ``on_finish(result)`` once, after the release, the finalisation and the evaluation.

An exception raised by a hook stops the run (tests use that to interrupt one).
Callbacks here: :class:`CheckpointCallback` (writes the run's checkpoints) and
:class:`ProgressBar` (the ``train`` command's bar); Ray Tune's reporter is
:class:`sweeps.trial.TuneReporter`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tqdm import tqdm

from fedsim.checkpoint import write_checkpoint

if TYPE_CHECKING:
    from fedsim.simulation import ClientPool, RunResult


class RunCallback:
    """Hooks of a federation run (module docstring); every one a no-op here."""

    def on_start(self, start_round: int, result: RunResult) -> None:
        """Before round ``start_round`` (0, or the rounds a resumed run already has)."""

    def on_round_start(self, round_index: int, ids: Sequence[int]) -> None:
        """Before round ``round_index`` (0-based) runs on clients ``ids``."""

    def on_round_end(self, round_index: int, row: dict, result: RunResult) -> None:
        """After round ``round_index`` (0-based; ``row["round"] == round_index + 1``)."""

    def on_release(self, rounds_done: int, result: RunResult) -> None:
        """After the clients' releases, before the server reads them (``rounds_done``: the
        rounds run so far)."""

    def on_finish(self, result: RunResult) -> None:
        """After the last round, the release, the finalisation and the evaluation."""


class CheckpointCallback(RunCallback):
    """Writes a checkpoint (:func:`fedsim.checkpoint.write_checkpoint`) every ``every``
    rounds, after the last round and after the clients' releases, then tells the pool
    which checkpoint a client worker lost later restarts from
    (:meth:`ClientPool.checkpoint_written`).  The checkpoint after the releases holds
    them (each client keeps its release), so a ``--resume`` after a crash between the
    release and the end of the run hands the server the same releases again instead of
    drawing fresh noise that no accountant charged (two independent releases of the same
    statistics would carry less noise than the one accounted)."""

    def __init__(self, run_dir: str | Path, every: int, total_rounds: int, server, pool: ClientPool,
                 command: Any) -> None:
        if every <= 0:
            raise ValueError(f"a checkpoint every {every} rounds: needs every >= 1")
        self.run_dir, self.every, self.total_rounds = Path(run_dir), every, total_rounds
        self.server, self.pool, self.command = server, pool, command
        self.seconds_before = 0.0
        self.started = time.perf_counter()
        self.written: list[int] = []

    def on_start(self, start_round: int, result: RunResult) -> None:
        self.seconds_before, self.started = result.seconds, time.perf_counter()

    def on_round_end(self, round_index: int, row: dict, result: RunResult) -> None:
        rounds_done = round_index + 1
        if rounds_done % self.every and rounds_done != self.total_rounds:
            return
        self._write(rounds_done, result)

    def on_release(self, rounds_done: int, result: RunResult) -> None:
        self._write(rounds_done, result)

    def _write(self, rounds_done: int, result: RunResult) -> None:
        seconds = self.seconds_before + time.perf_counter() - self.started
        checkpoint = write_checkpoint(self.run_dir, rounds_done, self.server, self.pool, result.round_metrics,
                                      seconds, self.command)
        self.pool.checkpoint_written(checkpoint.directory, checkpoint.shards)
        self.written.append(rounds_done)


class ProgressBar(RunCallback):
    """A tqdm bar over the rounds on stderr, showing the running ε maximum and, when the
    algorithm reports it, the reconstruction loss."""

    def __init__(self, total_rounds: int) -> None:
        self.bar = tqdm(total=total_rounds, desc="rounds", unit="round", file=sys.stderr)

    def on_start(self, start_round: int, result: RunResult) -> None:
        self.bar.update(start_round)  # a resumed run starts after its checkpoint

    def on_round_end(self, round_index: int, row: dict, result: RunResult) -> None:
        postfix = {"eps": f"{row['epsilon_max']:.3g}"}
        if "reconstruction" in row:
            postfix["recon"] = f"{row['reconstruction']:.4f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def on_finish(self, result: RunResult) -> None:
        self.bar.close()
