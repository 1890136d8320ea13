"""The trial body: Tune-loggable rows, and continuing from a run directory's checkpoint."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import run_training
from fedsim.data.federation import DataConfig
from fedsim.data.synthetic import SyntheticConfig
from fedsim.privacy.config import PrivacyConfig
from sweeps.trial import scalars, with_checkpoint


def test_scalars_keep_what_tune_can_log():
    row = {"round": 1, "eps": np.float32(0.5), "mode": "strict", "ok": True, "none": None, "list": [1]}
    kept = scalars(row)
    assert kept == {"round": 1, "eps": 0.5, "mode": "strict", "ok": True}
    assert type(kept["eps"]) is float


def test_a_rerun_trial_continues_from_its_checkpoint_only_with_the_same_configuration(tmp_path):
    command = TrainCommand(data=DataConfig(num_clients=3, partition="iid",
                                           synthetic=SyntheticConfig(n_samples=300, dim=8)),
                           privacy=PrivacyConfig(epsilon=math.inf), training=TrainingConfig(rounds=2),
                           fedhypevae=FedHypeVAEConfig(hidden_dim=16, latent_dim=4, code_dim=4, hyper_hidden=8,
                                                       label_dim=4, meta_steps=10),  # tiny: trains in seconds
                           checkpoint_every=1, out=tmp_path / "run", threads=1, progress=False,
                           backend="local")  # as a sweep trial runs by default (--backend local)
    fresh, rows = with_checkpoint(command)
    assert fresh is command and rows == []  # nothing to continue from yet
    run_training(command)
    resumed, rows = with_checkpoint(command)
    assert resumed.resume == command.out and [r["round"] for r in rows] == [1, 2]
    changed = dataclasses.replace(command, seed=1)
    assert with_checkpoint(changed) == (changed, [])
    runtime_only = dataclasses.replace(command, threads=2, backend="ray")
    assert with_checkpoint(runtime_only)[0].resume == command.out
