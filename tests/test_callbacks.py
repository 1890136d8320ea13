"""The round driver's callbacks (fedsim/callbacks.py): when each hook is called, with
what; the checkpoint writer, the resume step and the progress bar built on them."""

from __future__ import annotations

import functools
import math

import pytest

from fedsim.algorithms.spec import TrainingConfig
from fedsim.callbacks import CheckpointCallback, ProgressBar, RunCallback
from fedsim.checkpoint import load_checkpoint
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import prepare
from fedsim.data.federation import DataConfig
from fedsim.data.synthetic import SyntheticConfig
from fedsim.evaluation.classifier import LinearProbeConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig
from fedsim.simulation import LocalClientPool, RunResult, resume_run, run_federation

ROUNDS = 3
COMMAND = TrainCommand(algorithm="fedavg", backend="local", progress=False, checkpoint_every=0,
                       data=DataConfig(num_clients=2, partition="iid",
                                       synthetic=SyntheticConfig(n_samples=120, dim=4, num_classes=2)),
                       privacy=PrivacyConfig(epsilon=math.inf),
                       training=TrainingConfig(rounds=ROUNDS, batch_size=16),
                       evaluation=EvaluationConfig(probe=LinearProbeConfig(steps=2)))


class Recorder(RunCallback):
    """Appends ``(name, hook, arguments)`` to a shared ``log``."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def on_start(self, start_round, result):
        self.log.append((self.name, "start", start_round, [row["round"] for row in result.round_metrics]))

    def on_round_end(self, round_index, row, result):
        assert result.round_metrics[-1] is row  # the row is in the result when the hook runs
        self.log.append((self.name, "round", round_index, dict(row)))

    def on_finish(self, result):
        assert result.evaluations and result.privacy_records and result.artifact is not None
        self.log.append((self.name, "finish", id(result), len(result.round_metrics)))


class Interrupt(Exception):
    pass


class StopAfter(RunCallback):
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    def on_round_end(self, round_index, row, result):
        if row["round"] == self.rounds:
            raise Interrupt


class NotifiedPool(LocalClientPool):
    """The local pool, remembering which checkpoints it was told about."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.notified: list[tuple[str, list[int]]] = []

    def checkpoint_written(self, directory, shards):
        self.notified.append((directory.name, sorted(cid for shard in shards for cid in shard["ids"])))


@functools.cache
def prepared_run():
    return prepare(COMMAND)


def build():
    """A fresh server and pool of :data:`COMMAND`."""
    prepared = prepared_run()
    server = prepared.module.make_server(prepared.spec, prepared.settings)
    return prepared.settings, server, NotifiedPool(prepared.federation, prepared.spec, prepared.settings)


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_hooks_are_called_in_order_and_on_finish_once():
    log: list = []
    settings, server, pool = build()
    result = run_federation(server, pool, settings, [Recorder("a", log), Recorder("b", log)])
    hooks = [(name, hook) for name, hook, *_ in log]
    assert hooks == [("a", "start"), ("b", "start")] + [("a", "round"), ("b", "round")] * ROUNDS + [
        ("a", "finish"), ("b", "finish")]
    assert log[0][2:] == (0, [])
    assert [entry[2] for entry in log if entry[1] == "round"] == [0, 0, 1, 1, 2, 2]
    rows = [entry[3] for entry in log if entry[0] == "a" and entry[1] == "round"]
    assert rows == result.round_metrics and [row["round"] for row in rows] == [1, 2, 3]
    assert all(row["epsilon_max"] == math.inf for row in rows)  # no DP in this run: ε = ∞
    assert [entry[2:] for entry in log if entry[1] == "finish"] == [(id(result), ROUNDS)] * 2


def test_callbacks_do_not_change_results():
    settings, server, pool = build()
    plain = run_federation(server, pool, settings)
    settings, server, pool = build()
    watched = run_federation(server, pool, settings, [Recorder("a", [])])
    assert without_seconds(plain.round_metrics) == without_seconds(watched.round_metrics)
    assert plain.privacy_records == watched.privacy_records


def test_an_exception_in_a_hook_stops_the_run_before_on_finish():
    log: list = []
    settings, server, pool = build()
    with pytest.raises(Interrupt):
        run_federation(server, pool, settings, [StopAfter(2), Recorder("a", log)])
    assert [hook for _, hook, *_ in log] == ["start", "round"]  # the recorder after the stopper saw round 1 only


def test_checkpoints_then_resume_continue_to_the_uninterrupted_rows(tmp_path):
    settings, server, pool = build()
    whole = run_federation(server, pool, settings)

    settings, server, pool = build()
    writer = CheckpointCallback(tmp_path, 2, ROUNDS, server, pool, COMMAND)
    with pytest.raises(Interrupt):
        run_federation(server, pool, settings, [writer, StopAfter(3)])
    # the writer runs first, so round 3 (the last) was checkpointed before the stop
    assert writer.written == [2, 3]
    assert [name.split("-")[1] for name, _ in pool.notified] == ["000002", "000003"]
    assert all(ids == [0, 1] for _, ids in pool.notified)
    assert load_checkpoint(tmp_path).rounds_done == 3

    settings, server, pool = build()
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        run_federation(server, pool, settings, [StopAfter(3), CheckpointCallback(interrupted, 2, ROUNDS, server,
                                                                                 pool, COMMAND)])
    assert load_checkpoint(interrupted).rounds_done == 2

    log: list = []
    settings, server, pool = build()
    start, earlier = resume_run(interrupted, server, pool)
    assert start == 2 and [row["round"] for row in earlier.round_metrics] == [1, 2]
    assert [name.split("-")[1] for name, _ in pool.notified] == ["000002"]  # told which checkpoint it has
    resumed = run_federation(server, pool, settings, [Recorder("a", log)], start_round=start, result=earlier)
    assert resumed is earlier
    assert [entry[1:3] for entry in log[:2]] == [("start", 2), ("round", 2)] and log[0][3] == [1, 2]
    assert without_seconds(resumed.round_metrics) == without_seconds(whole.round_metrics)
    assert resumed.privacy_records == whole.privacy_records


def test_a_checkpoint_callback_needs_a_positive_cadence(tmp_path):
    settings, server, pool = build()
    with pytest.raises(ValueError, match="every"):
        CheckpointCallback(tmp_path, 0, ROUNDS, server, pool, COMMAND)


def test_the_progress_bar_counts_rounds_from_where_a_run_starts():
    bar = ProgressBar(total_rounds=5)
    result = RunResult(round_metrics=[{"round": 1}, {"round": 2}])
    bar.on_start(2, result)
    bar.on_round_end(2, {"round": 3, "epsilon_max": 0.5, "reconstruction": 1.25}, result)
    assert bar.bar.n == 3 and bar.bar.postfix == "eps=0.5, recon=1.2500"
    bar.on_finish(result)
    assert bar.bar.disable  # closed
