"""``python -m fedsim.audit``: output files, bad input, the audit's power at ε = ∞ and
its validity at ε = 1, and that a normal run is unchanged by the audit's existence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fedsim.audit.__main__ import main

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
    assert report["steps"] == report["plan"]["total_steps"]
    assert "before the canaries" in report["plan_note"]
    printed = capsys.readouterr().out
    assert "claimed ε" in printed and "ε_lb" in printed


@pytest.mark.parametrize("option, value", [("--canaries", "1"), ("--beta", "1.5"),
                                           ("--privacy.epsilon", "-1")])
def test_bad_options_exit_with_code_2(tmp_path, capsys, option, value):
    assert main([*TINY_FEDAVG, option, value, "--out", str(tmp_path)]) == 2
    assert option.lstrip("-").split(".")[-1].replace("-", "_") in capsys.readouterr().err.replace("-", "_")
    assert not (tmp_path / "audit.json").exists()


def test_a_method_without_dp_sgd_is_refused(tmp_path, capsys):
    assert main(["--algorithm", "dp-stats", "--data.synthetic.n-samples", "400", "--data.synthetic.dim", "8",
                 "--out", str(tmp_path)]) == 2
    assert "DP-SGD" in capsys.readouterr().err


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
