"""The sweep grid: axes, validation, trial configs → TrainCommand (no Ray needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.registry import NAMES
from fedsim.commands.train import TrainCommand
from fedsim.errors import UserError
from sweeps.grid import alpha_label, build_grid, trial_command, trial_name
from sweeps.options import RunOptions

BASE = TrainCommand()


def grid(**changes):
    axes = dict(methods=("fedhypevae",), epsilons=(1.0, math.inf), alphas=("0.3", "iid"),
                lambda_mmd=(1.0,), lambda_v=(1e-3,), lambda_lip=(1e-3,), seeds=(0,), base=BASE)
    axes.update(changes)
    return build_grid(**axes)


def test_alpha_labels_are_canonical():
    assert [alpha_label(a) for a in ("0.30", "1.0", "IID", 2)] == ["0.3", "1", "iid", "2"]
    for bad in ("-1", "0", "nan", "inf", "skewed"):
        with pytest.raises(UserError, match="--alphas"):
            alpha_label(bad)


def test_default_methods_are_every_registered_algorithm():
    assert RunOptions().grid().methods == NAMES
    assert grid(methods=None).methods == NAMES


def test_lambdas_multiply_only_fedhypevae_and_non_private_methods_run_once():
    g = grid(methods=("fedhypevae", "fedavg", "dp-cvae"), lambda_mmd=(0.1, 1.0), lambda_v=(0.0, 1e-3))
    assert g.epsilon_free == ("fedavg",)  # FedAvgConfig.private is False by default
    points = g.points()
    fhv = [p for p in points if p["method"] == "fedhypevae"]
    assert len(fhv) == 2 * 2 * 2  # λ_MMD × λ_v × ε
    assert [p["epsilon"] for p in points if p["method"] == "fedavg"] == [math.inf]
    assert all(p["lambda_mmd"] is None for p in points if p["method"] != "fedhypevae")
    assert len([p for p in points if p["method"] == "dp-cvae"]) == 2
    assert g.size() == len(points) * 2 * 1
    assert g.swept_lambdas() == ("lambda_mmd", "lambda_v")


def test_lambda_defaults_come_from_the_fedhypevae_options():
    options = RunOptions(fedhypevae=FedHypeVAEConfig(lambda_mmd=0.5), methods=("fedhypevae",))
    g = options.grid()
    assert (g.lambda_mmd, g.lambda_v, g.lambda_lip) == ((0.5,), (1e-3,), (1e-3,))


@pytest.mark.parametrize("changes, option", [
    (dict(methods=("nope",)), "--methods"),
    (dict(methods=()), "--methods"),
    (dict(epsilons=(0.0,)), "--epsilons"),
    (dict(epsilons=()), "--epsilons"),
    (dict(alphas=()), "--alphas"),
    (dict(lambda_v=(-1.0,)), "--lambda-v"),
    (dict(lambda_mmd=(math.inf,)), "--lambda-mmd"),
    (dict(seeds=()), "--seeds"),
])
def test_bad_axes_name_their_option(changes, option):
    with pytest.raises(UserError, match=option):
        grid(**changes)


def test_trial_command_sets_method_epsilon_partition_lambdas_seed_and_run_dir(tmp_path):
    point = {"method": "fedhypevae", "epsilon": 2.0, "lambda_mmd": 0.5, "lambda_v": 0.01, "lambda_lip": 0.0}
    config = {"point": point, "alpha": "0.1", "seed": 7}
    command = trial_command(BASE, config, tmp_path)
    assert command.algorithm == "fedhypevae" and command.seed == 7
    assert command.privacy.epsilon == 2.0
    assert (command.data.partition, command.data.alpha) == ("dirichlet", 0.1)
    assert (command.fedhypevae.lambda_mmd, command.fedhypevae.lambda_v, command.fedhypevae.lambda_lip) == (0.5, 0.01, 0.0)
    assert command.out == tmp_path / "fedhypevae_eps2_alpha0.1_mmd0.5_v0.01_lip0_seed7"
    assert (command.threads, command.progress) == (1, False)
    iid = trial_command(BASE, {"point": {"method": "fedavg", "epsilon": math.inf, "lambda_mmd": None,
                                         "lambda_v": None, "lambda_lip": None}, "alpha": "iid", "seed": 0}, tmp_path)
    assert iid.data.partition == "iid" and iid.fedhypevae == BASE.fedhypevae
    assert iid.out.name == trial_name({"point": {"method": "fedavg", "epsilon": math.inf}, "alpha": "iid", "seed": 0})
    assert iid.out.name == "fedavg_epsinf_alphaiid_seed0"


def test_relative_dataset_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from fedsim.data.federation import DataConfig

    base = RunOptions(data=DataConfig(dataset="emb.parquet")).base_command()
    assert Path(base.data.dataset) == tmp_path / "emb.parquet"
    assert RunOptions().base_command().data.dataset == "synthetic"
