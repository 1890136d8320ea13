"""Every option of ``train`` is checked before any work: an invalid value exits with code 2
and one message naming the option as typed, without a traceback and without creating the
run directory.  ``INVALID`` must hold an entry for every field of every config (method
configs included), so a field added without a check makes this test fail."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from fedsim.algorithms.registry import METHODS, NAMES
from fedsim.commands.federation_options import FederationOptions
from fedsim.commands.train import TrainCommand
from fedsim.run import main

FLAG = "flag"  # a bool: --x / --no-x, no value that could be invalid


def _fedavg_family(extra: dict) -> dict:
    return {"lr": ["0"], "momentum": ["1"], "weight_decay": ["-1"], "private": FLAG, **extra}


def _scaling() -> dict:
    return {"scaling.output": ["tanh"], "scaling.low": ["nan"], "scaling.high": ["inf"]}


INVALID: dict[str, list[str] | str] = {
    # top level
    "algorithm": ["fedsgd"], "seed": ["x"], "backend": ["dask"], "checkpoint_every": ["-1"],
    "resume": ["{missing}"], "out": ["{file}"], "threads": ["-1"], "progress": FLAG, "device": ["gpu"],
    # --data.*
    "data.dataset": ["{missing}.parquet"], "data.partition": ["ring"], "data.alpha": ["0"],
    "data.num_clients": ["0"], "data.min_samples": ["-1"], "data.test_fraction": ["1"],
    "data.val_fraction": ["-0.1"], "data.partition_seed": ["abc"], "data.standardize": ["zscore"],
    "data.synthetic.n_samples": ["1"], "data.synthetic.dim": ["0"], "data.synthetic.num_classes": ["1"],
    "data.synthetic.num_sites": ["0"], "data.synthetic.imbalance": ["-1"], "data.synthetic.intrinsic_dim": ["0"],
    "data.synthetic.site_shift": ["-1"], "data.synthetic.noise": ["nan"], "data.synthetic.class_separation": ["0"],
    # --privacy.*
    "privacy.epsilon": ["0"], "privacy.delta": ["1"], "privacy.clip_norm": ["0"], "privacy.accountant": ["gdp"],
    "privacy.privacy_mode": ["loose"], "privacy.stats_epsilon_fraction": ["1"], "privacy.stats_clip_norm": ["0"],
    "privacy.covariance": ["block"], "privacy.reproducible_noise": FLAG,
    "privacy.max_records": ["0"], "privacy.reserved_rounds": ["-1"],
    "privacy.noise_placement": ["server"], "privacy.min_cohort": ["0"],
    # --training.*
    "training.rounds": ["0"], "training.local_epochs": ["0"], "training.batch_size": ["0"],
    "training.client_fraction": ["0"], "training.synthetic_size": ["-1"],
    # --evaluation.*
    "evaluation.selection": ["best"], "evaluation.synthetic_labels": ["none"], "evaluation.test": ["pooled"], "evaluation.probe.steps": ["0"],
    "evaluation.synthetic_size": ["0x"], "evaluation.lambda_guard": ["-1"], "evaluation.lambda_metric": ["bacc"], "evaluation.mix": ["loss"], "evaluation.mix_lambdas": ["0.5", "0.2"],
    "evaluation.probe.folds": ["1"],
    "evaluation.probe.lr": ["0"], "evaluation.probe.weight_decay": ["-1"], "evaluation.probe.preset": ["auto"],
    "evaluation.probe.inverse_l2": ["0"], "evaluation.probe.class_weight": ["auto"],
    "evaluation.probe.max_iter": ["0"], "evaluation.probe.tolerance": ["0"],
    "evaluation.probe.standard_errors": ["-1"], "evaluation.probe.include_reference": FLAG,
    # --ray.*
    "ray.address": [""], "ray.num_cpus": ["-1"], "ray.cpus_per_actor": ["0"], "ray.gpus_per_actor": ["-1"],
    "ray.clients_per_actor": ["-1"], "ray.max_actors": ["-1"], "ray.round_timeout_s": ["-1"],
    "ray.max_restarts": ["-1"],
    # one group per method (fedsim.algorithms.registry.METHODS)
    **{f"fedhypevae.{name}": value for name, value in {
        "latent_dim": ["0"], "hidden_dim": ["0"], "hidden_layers": ["0"], "code_dim": ["0"], "code_radius": ["0"],
        "hyper_hidden": ["0"], "label_dim": ["0"], "beta": ["-1"], "lambda_mmd": ["nan"], "mmd_samples": ["0"],
        "lambda_lip": ["-1"], "lambda_v": ["inf"], "lr": ["0"], "server_lr": ["-1"], "hypernetwork": FLAG,
        "meta_codes": ["0"], "meta_steps": ["0"], "meta_lr": ["0"], "meta_samples": ["1"], "meta_beta": ["-1"],
        "meta_fit": FLAG, "training": ["dp"], "statistics_share": ["1.5"], "dp_sgd_parameters": ["encoder"],
        "warm_start_steps": ["0"], "warm_start_batch": ["0"], "warm_start_lr": ["0"],
        "observation_variance": FLAG}.items()},
    **{f"fedavg.{name}": value for name, value in _fedavg_family({}).items()},
    **{f"fedprox.{name}": value for name, value in _fedavg_family({"mu": ["-0.5"]}).items()},
    **{f"fedlambda.{name}": value for name, value in _fedavg_family({}).items()},
    # dp-fedavg / dp-fedprox: private is a flag whose --no- form is refused (tests/commands/test_table_command.py)
    **{f"dp_fedavg.{name}": value for name, value in _fedavg_family({}).items()},
    **{f"dp_fedprox.{name}": value for name, value in _fedavg_family({"mu": ["-0.5"]}).items()},
    **{f"dp_cvae.{name}": value for name, value in {
        "hidden_dim": ["0"], "hidden_layers": ["0"], "latent_dim": ["0"], "beta": ["-1"], "lr": ["0"],
        **_scaling()}.items()},
    **{f"dp_cgan.{name}": value for name, value in {
        "latent_dim": ["0"], "generator_hidden": ["0"], "discriminator_hidden": ["16", "0"], "lr": ["0"],
        "beta1": ["1"], "beta2": ["-0.1"], **_scaling()}.items()},
    **{f"dp_stats.{name}": value for name, value in {
        "clip_norm": ["0"], "covariance": ["block"], "rank": ["0"], "shrinkage": ["1.5"], "variance_floor": ["-1"],
        "min_count_stds": ["nan"]}.items()},
}


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Loading the data is the first work after validation: reaching it means a check is missing."""
    from fedsim.commands import training_run

    def refuse(*args, **kwargs):
        raise AssertionError("the invalid option passed validation; work started")

    monkeypatch.setattr(training_run, "load_federation", refuse)


def leaf_fields(config_type: type, prefix: str = "") -> dict[str, type]:
    """Every option below ``config_type``: dotted field path → its type (nested configs walked)."""
    hints = typing.get_type_hints(config_type, include_extras=False)
    leaves = {}
    for field in dataclasses.fields(config_type):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            leaves.update(leaf_fields(kind, f"{prefix}{field.name}."))
        else:
            leaves[f"{prefix}{field.name}"] = kind
    return leaves


FIELDS = leaf_fields(TrainCommand)


def cli_name(path: str) -> str:
    return "--" + path.replace("_", "-")


def test_every_option_has_an_invalid_value():
    assert set(INVALID) == set(FIELDS), "add an invalid value (and a check) for every new option"
    for path, value in INVALID.items():
        if value == FLAG:
            assert FIELDS[path] is bool, f"{path} is not a flag; give it an invalid value"


def test_every_method_has_its_option_group():
    fields = [f.name for f in dataclasses.fields(FederationOptions)]
    assert [f for f in fields if f not in ("data", "privacy", "training", "evaluation")] == [m.field for m in METHODS]
    assert typing.get_args(typing.get_type_hints(TrainCommand)["algorithm"]) == NAMES


@pytest.mark.parametrize("path", [p for p, v in INVALID.items() if v != FLAG])
def test_invalid_option_exits_2_naming_it(path, tmp_path, capsys):
    run_dir = tmp_path / "run"
    existing_file = tmp_path / "a-file"
    existing_file.write_text("not a directory")
    values = [v.format(missing=tmp_path / "missing", file=existing_file) for v in INVALID[path]]
    args = ["train", cli_name(path), *values]
    if path != "out":
        args += ["--out", str(run_dir)]
    if path != "backend":
        args += ["--backend", "local"]  # should a check be missing, no Ray session starts
    try:
        code = main(args)
    except SystemExit as exit_:  # tyro refuses ill-typed values and unknown choices itself
        code = exit_.code
    captured = capsys.readouterr()
    message = captured.err + captured.out
    assert code == 2, message
    assert cli_name(path) in message
    assert "Traceback" not in message
    assert not run_dir.exists() and existing_file.is_file()


def test_cross_option_check_names_both(tmp_path, capsys):
    args = ["train", "--dp-cvae.scaling.output", "sigmoid", "--dp-cvae.scaling.low", "2",
            "--dp-cvae.scaling.high", "1", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--dp-cvae.scaling.high" in err and "--dp-cvae.scaling.low" in err
    assert not (tmp_path / "run").exists()
