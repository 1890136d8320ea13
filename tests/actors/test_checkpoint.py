"""Checkpoints, --resume and client recovery (local backend; no Ray)."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from fedsim.callbacks import RunCallback
from fedsim.checkpoint import load_checkpoint
from fedsim.commands.resume import resume_command
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import prepare, run_training
from fedsim.errors import UserError
from fedsim.run import main
from fedsim.privacy.recovery import recover_client
from fedsim.simulation import LocalClientPool
from runtime_helpers import tiny_command


class Interrupt(Exception):
    pass


class DieInRound(RunCallback):
    """Interrupts a run at the end of round ``round`` (before its checkpoint)."""

    def __init__(self, round: int) -> None:
        self.round = round

    def on_round_end(self, round_index, row, result):
        if row["round"] == self.round:
            raise Interrupt


class DieBeforeRound(RunCallback):
    """Interrupts a run between rounds, before round ``round`` starts (nothing of it ran)."""

    def __init__(self, round: int) -> None:
        self.round = round

    def on_round_start(self, round_index, ids):
        if round_index + 1 == self.round:
            raise Interrupt


def assert_same_outputs(run_dir, reference):
    """Every output file of two runs is the same (wall-clock seconds aside)."""
    for name in ("metrics", "synthetic", "clients"):
        frames = [pd.read_parquet(d / f"{name}.parquet") for d in (run_dir, reference)]
        frames = [f.drop(columns=["seconds"], errors="ignore") for f in frames]
        pd.testing.assert_frame_equal(*frames, check_exact=True)
    for name in ("summary", "privacy"):
        docs = [json.loads((d / f"{name}.json").read_text()) for d in (run_dir, reference)]
        for doc in docs:
            doc.pop("seconds", None)
        assert docs[0] == docs[1]


def test_resume_continues_a_killed_run_to_the_same_results(tmp_path, capsys):
    """Killed between rounds, after its checkpoint: nothing was released since, so the
    resumed run is the uninterrupted one (seeded noise to compare them).  A round that
    started before a kill is charged again and re-run on fresh noise instead
    (tests/actors/test_privacy_resume.py)."""
    command = tiny_command(clients=2, rounds=3, checkpoint_every=2)
    command = replace(command, training=replace(command.training, batch_size=32),
                      privacy=replace(command.privacy, reproducible_noise=True))
    run_training(replace(command, out=tmp_path / "whole"))

    with pytest.raises(Interrupt):
        run_training(replace(command, out=tmp_path / "killed"), [DieBeforeRound(3)])
    assert load_checkpoint(tmp_path / "killed").rounds_done == 2
    assert not (tmp_path / "killed" / "summary.json").exists()
    assert main(["--resume", str(tmp_path / "killed"), "--backend", "local", "--no-progress"]) == 0  # the CLI
    assert_same_outputs(tmp_path / "killed", tmp_path / "whole")
    assert load_checkpoint(tmp_path / "killed").rounds_done == 3
    # only the latest checkpoint is kept, and no temporary directory is left behind
    assert [p.name.split("-")[1] for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.is_dir()] == ["000003"]


def test_resume_refuses_options_that_change_results(tmp_path):
    saved = tiny_command(out=tmp_path)
    with pytest.raises(UserError, match="--seed"):
        resume_command(TrainCommand(resume=tmp_path, seed=7), saved, tmp_path)
    resumed = resume_command(TrainCommand(resume=tmp_path, backend="ray", threads=1), saved, tmp_path)
    assert (resumed.backend, resumed.threads, resumed.data, resumed.out) == ("ray", 1, saved.data, tmp_path)
    assert resume_command(TrainCommand(resume=tmp_path, backend="local"), saved, tmp_path).backend == "local"
    assert resume_command(TrainCommand(resume=tmp_path, seed=saved.seed), saved, tmp_path).seed == saved.seed


def test_resume_without_a_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--resume"):
        run_training(TrainCommand(resume=tmp_path, backend="local", progress=False))


def test_recovery_charges_every_started_round_and_reseeds_the_noise():
    command = tiny_command(rounds=3)
    prepared = prepare(command)
    pool = LocalClientPool(prepared.federation, prepared.spec, prepared.settings)
    server = prepared.module.make_server(prepared.spec, prepared.settings)
    client = pool.clients[0]
    client.local_round(server.broadcast(), 0)
    confirmed = client.privacy_state.accountant.state_dict()  # reported after round 1
    per_round = command.training.local_epochs * client.privacy_state.plan.steps_per_epoch
    assert client.privacy_state.accountant.dp_sgd_steps() == per_round

    fresh = LocalClientPool(prepared.federation, prepared.spec, prepared.settings).clients[0]  # "restarted"
    old_noise = fresh.privacy_state.noise.state_dict()["generator"]
    trainer_accountant = fresh.privacy_state.accountant
    recover_client(fresh, confirmed, unconfirmed_rounds=2, seed=command.seed, round_index=2, restart=1)
    assert fresh.privacy_state.accountant is trainer_accountant  # updated in place
    assert fresh.privacy_state.accountant.dp_sgd_steps() == 3 * per_round  # round 1 confirmed + 2 started
    assert fresh.privacy_state.epsilon() > client.privacy_state.epsilon()
    assert not torch.equal(fresh.privacy_state.noise.state_dict()["generator"], old_noise)
