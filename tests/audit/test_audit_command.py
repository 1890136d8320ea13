"""``python -m fedsim.audit``: output files, bad input, the audit's power at ε = ∞ and
its validity at ε = 1, and that a normal run is unchanged by the audit's existence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from opacus.accountants import RDPAccountant

from fedsim.audit.__main__ import main
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.plan import plan_dp_sgd

TINY_FEDAVG = ["--algorithm", "fedavg", "--fedavg.private", "--data.synthetic.n-samples", "400",
               "--data.synthetic.dim", "8", "--training.rounds", "1", "--canaries", "20",
               "--privacy.reproducible-noise", "--threads", "1"]
SMALL_FEDHYPEVAE = ["--data.synthetic.n-samples", "2000", "--data.synthetic.dim", "32",
                    "--fedhypevae.hidden-dim", "32", "--training.rounds", "3", "--canaries", "500",
                    "--fedhypevae.training", "dp-sgd",
                    "--privacy.reproducible-noise", "--threads", "1"]


def _audit(tmp_path: Path, *args: str) -> dict:
    assert main([*args, "--out", str(tmp_path)]) == 0
    return json.loads((tmp_path / "audit.json").read_text())


def test_the_cli_writes_audit_json_and_the_histogram(tmp_path, capsys):
    report = _audit(tmp_path, *TINY_FEDAVG, "--privacy.epsilon", "2")
    assert (tmp_path / "scores.png").stat().st_size > 1000
    assert report["canaries"] == len(report["scores"]) == len(report["included"]) == 20
    assert report["delta"] == 1e-4 and report["beta"] == 0.05
    assert 0 < report["claimed_epsilon"] <= 2 + 1e-9
    assert report["epsilon_lower_bound"] >= 0 and 0 <= report["auc"] <= 1
    plan = report["plan"]
    assert report["steps"] == plan["steps_per_epoch"] * 1  # one round of one epoch
    assert plan["total_steps"] == (1 + 1) * plan["steps_per_epoch"]  # + the default reserved round
    assert "before the canaries" in report["plan_note"] and "max-records" in report["plan_note"]
    printed = capsys.readouterr().out
    assert "claimed ε" in printed and "ε_lb" in printed


@pytest.mark.parametrize("reserved", [0, 2])
def test_the_plan_is_the_public_bounds_whichever_canaries_are_included(tmp_path, reserved):
    """The audited plan is plan_dp_sgd of the bound alone: the same for the client's n records
    and for n plus every included canary (inclusion cannot change q, T, σ); reserved rounds are
    planned but not run, and the claimed ε is the accountant's for the steps run."""
    report = _audit(tmp_path, *TINY_FEDAVG, "--privacy.epsilon", "2", "--privacy.max-records", "512",
                    "--privacy.reserved-rounds", str(reserved))
    privacy = PrivacyConfig(epsilon=2.0, max_records=512, reserved_rounds=reserved)
    n, included = report["client_records"], sum(report["included"])
    plans = [plan_dp_sgd(records, 128, 1, 1, privacy).as_dict() for records in (n, n + included, n + 20)]
    assert report["plan"] == plans[0] == plans[1] == plans[2]
    assert report["plan"]["sample_rate"] == pytest.approx(128 / 512) and 0 < included < 20
    assert report["plan"]["total_steps"] == (1 + reserved) * 4 and report["steps"] == 4
    accountant = RDPAccountant()
    accountant.history = [(report["plan"]["noise_multiplier"], 128 / 512, 4)]
    assert report["claimed_epsilon"] == pytest.approx(accountant.get_epsilon(1e-4), rel=1e-6)
    if reserved == 0:  # every planned step run: the target, to the calibration's precision
        assert report["claimed_epsilon"] == pytest.approx(2.0, rel=0.01)
    else:              # 1 of 3 planned rounds run
        assert report["claimed_epsilon"] < 1.5


def test_a_bound_below_the_records_plus_canaries_is_refused(tmp_path, capsys):
    assert main([*TINY_FEDAVG, "--privacy.max-records", "260", "--out", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "--privacy.max-records must be at least" in message and "--canaries 20" in message
    assert not (tmp_path / "audit.json").exists()


@pytest.mark.parametrize("option, value", [("--canaries", "1"), ("--beta", "1.5"),
                                           ("--privacy.epsilon", "-1")])
def test_bad_options_exit_with_code_2(tmp_path, capsys, option, value):
    assert main([*TINY_FEDAVG, option, value, "--out", str(tmp_path)]) == 2
    assert option.lstrip("-").split(".")[-1].replace("-", "_") in capsys.readouterr().err.replace("-", "_")
    assert not (tmp_path / "audit.json").exists()


def test_a_method_without_dp_sgd_is_refused_by_the_gradient_audit(tmp_path, capsys):
    assert main(["--algorithm", "dp-stats", "--target", "gradient", "--data.synthetic.n-samples", "400",
                 "--data.synthetic.dim", "8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "DP-SGD" in err and "--target statistics" in err
    assert not (tmp_path / "audit.json").exists()


@pytest.mark.parametrize("algorithm", ["dp-stats", "fedhypevae"])
def test_auto_target_audits_the_statistics_release_of_a_method_without_dp_sgd(tmp_path, algorithm):
    """``--target auto`` (default): dp-stats and FedHypeVAE's default statistics-first
    training run no DP-SGD, so their one statistics release is audited."""
    report = _audit(tmp_path, "--algorithm", algorithm, "--data.synthetic.n-samples", "600", "--data.synthetic.dim",
                    "16", "--canaries", "100", "--privacy.epsilon", "inf")
    assert report["target"] == "statistics" and report["epsilon_lower_bound"] > 1


@pytest.mark.slow
def test_without_dp_the_audit_finds_epsilon_above_2(tmp_path):
    report = _audit(tmp_path, *SMALL_FEDHYPEVAE, "--privacy.epsilon", "inf")
    assert report["claimed_epsilon"] == "inf"
    assert report["epsilon_lower_bound"] > 2
    assert report["auc"] > 0.9


@pytest.mark.slow
def test_at_epsilon_1_the_audit_finds_at_most_1(tmp_path):
    report = _audit(tmp_path, *SMALL_FEDHYPEVAE, "--privacy.epsilon", "1")
    assert report["claimed_epsilon"] <= 1
    assert report["epsilon_lower_bound"] <= 1


TRAIN = ["train", "--backend", "local", "--privacy.reproducible-noise", "--data.synthetic.n-samples", "400",
         "--data.synthetic.dim", "8", "--data.num-clients", "2", "--training.rounds", "2",
         "--fedhypevae.hidden-dim", "16", "--fedhypevae.meta-steps", "5", "--no-progress", "--threads", "1"]


def _train(out: Path, import_audit: bool) -> None:
    prelude = "import fedsim.audit.run, fedsim.audit.report; " if import_audit else ""
    check = "" if import_audit else "assert 'fedsim.audit' not in sys.modules; "
    script = (f"import sys; {prelude}from fedsim.run import main; code = main({[*TRAIN, '--out', str(out)]!r}); "
              f"{check}sys.exit(code)")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, env=_env())


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}


def _without_timings(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without wall-clock columns (the only thing two identical runs may differ in)."""
    return frame.drop(columns=[c for c in frame.columns if "seconds" in c])


@pytest.mark.slow
def test_a_normal_run_is_bit_identical_whether_or_not_the_audit_was_imported(tmp_path):
    _train(tmp_path / "plain", import_audit=False)
    _train(tmp_path / "imported", import_audit=True)
    for name in ("synthetic.parquet", "metrics.parquet", "clients.parquet"):
        plain, imported = (_without_timings(pd.read_parquet(tmp_path / run / name)) for run in ("plain", "imported"))
        pd.testing.assert_frame_equal(plain, imported, check_exact=True)
