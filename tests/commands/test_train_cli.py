"""``python -m fedsim.run train``: a tiny run writes the whole run directory, and bad
inputs exit with code 2 and one sentence (no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from opacus.accountants import RDPAccountant

from fedsim.data.dataset import EmbeddingDataset
from fedsim.data.io import load_embeddings, write_embeddings
from fedsim.run import main

TINY_RUN = ["--training.rounds", "1", "--data.synthetic.n-samples", "600", "--data.synthetic.dim", "16",
            "--data.num-clients", "3", "--threads", "1", "--no-progress", "--checkpoint-every", "0",
            "--fedhypevae.hidden-dim", "16", "--fedhypevae.latent-dim", "4", "--fedhypevae.code-dim", "4",
            "--fedhypevae.hyper-hidden", "8", "--fedhypevae.label-dim", "4", "--fedhypevae.meta-steps", "20",
            "--privacy.max-records", "256",  # the public bound ≥ the largest client's 147 train records
            "--fedhypevae.training", "dp-sgd"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fedsim.run", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_train_writes_the_run_directory(tmp_path):
    """The default backend (ray: starts a local Ray, then stops it) in a real process; one
    client actor, since every actor process imports torch."""
    out = tmp_path / "run"
    done = run_cli("train", *TINY_RUN, "--privacy.epsilon", "2.0", "--ray.max-actors", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    expected = {"config.json", "metrics.parquet", "privacy.json", "synthetic.parquet", "summary.json"}
    names = {p.name for p in out.iterdir()}
    assert expected <= names
    assert not [n for n in names if n.endswith(".tmp")]  # nothing half-written

    config = json.loads((out / "config.json").read_text())
    assert config["training"]["rounds"] == 1 and config["data"]["num_clients"] == 3 and config["backend"] == "ray"
    assert config["data"]["synthetic"]["n_samples"] == 600 and config["privacy"]["epsilon"] == 2.0

    metrics = pd.read_parquet(out / "metrics.parquet")
    assert list(metrics["round"]) == [1] and int(metrics["clients"][0]) == 3
    assert {"reconstruction", "kl", "mmd", "epsilon_max"} <= set(metrics.columns)

    ledger = json.loads((out / "privacy.json").read_text())
    assert len(ledger["clients"]) == 3
    for row in ledger["clients"]:
        fresh = RDPAccountant()  # re-check every client's ε from its recorded history
        fresh.history = [tuple(entry) for entry in row["history"]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert row["epsilon_total"] == pytest.approx(fresh.get_epsilon(row["delta"]), rel=1e-9)
        assert row["epsilon_total"] <= 2.0 and len(row["history"]) == 2
    assert ledger["epsilon_max"] == max(row["epsilon_total"] for row in ledger["clients"])
    assert metrics["epsilon_max"][0] <= ledger["epsilon_max"]  # DP-SGD alone, before the release

    synthetic = load_embeddings(out / "synthetic.parquet")
    assert synthetic.x.shape[1] == 16 and np.isfinite(synthetic.x).all()
    assert set(np.unique(synthetic.y)) <= set(range(11))
    assert synthetic.metadata.get("epsilon_max") == ledger["epsilon_max"]
    assert ledger["noise"] == synthetic.metadata.get("noise") == "secure (OS CSPRNG)"

    summary = json.loads((out / "summary.json").read_text())
    for key in ("acc_mean", "acc_std", "bacc_mean", "bacc_std"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["epsilon_max"] == ledger["epsilon_max"] and summary["privacy_mode"] == "strict"
    # the only caveat of a default private run: the global λ reads every client's validation data
    # per-client λ (the default) reads no other client's data: nothing to note
    assert summary["noise"] == "secure (OS CSPRNG)" and summary["privacy_note"] == ""
    assert "add/remove" in summary["neighbouring"] and summary["coverage"]
    assert "balanced accuracy" in done.stdout


def _nan_parquet(path: Path) -> Path:
    x = np.random.default_rng(0).normal(size=(90, 4)).astype(np.float32)
    x[5, 2] = np.nan
    write_embeddings(path, EmbeddingDataset(x=x, y=np.arange(90) % 3, site=None, split=None,
                                            class_names=None, name="nan", metadata={}))
    return path


@pytest.mark.parametrize("case", ["missing-file", "nan", "negative-epsilon", "zero-alpha"])
def test_bad_inputs_exit_2_with_one_sentence(case, tmp_path, capsys):
    if case == "missing-file":
        args, mention = ["--data.dataset", str(tmp_path / "missing.parquet")], "missing.parquet"
    elif case == "nan":
        args, mention = ["--data.dataset", str(_nan_parquet(tmp_path / "bad.parquet"))], "NaN"
    elif case == "negative-epsilon":
        args, mention = ["--privacy.epsilon", "-1"], "--privacy.epsilon"
    else:
        args, mention = ["--data.alpha", "0"], "--data.alpha"
    out = tmp_path / "run"
    code = main(["train", *TINY_RUN, *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and mention in lines[0], err
    assert not out.exists()  # failed before writing anything


def test_a_bad_input_in_a_real_process_exits_2_without_traceback(tmp_path):
    done = run_cli("train", *TINY_RUN, "--privacy.epsilon", "-1", "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--privacy.epsilon" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow  # a whole (tiny) run in-process: ~25 s of CPU
def test_reproducible_noise_is_labelled_not_a_guarantee_in_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", *TINY_RUN, "--backend", "local", "--privacy.reproducible-noise", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    label = "reproducible (seeded; NOT a DP guarantee)"
    config = json.loads((out / "config.json").read_text())
    assert config["privacy"]["reproducible_noise"] is True
    ledger = json.loads((out / "privacy.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    synthetic = load_embeddings(out / "synthetic.parquet")
    assert ledger["noise"] == summary["noise"] == synthetic.metadata.get("noise") == label
    for note in (ledger["note"], summary["privacy_note"], synthetic.metadata.get("note")):
        assert "NOT a differential-privacy guarantee" in note
    assert "WARNING" in captured.err and "NOT a differential-privacy guarantee" in captured.err
    assert "NOTE: " in captured.out and label in captured.out


def test_summary_says_a_method_without_dp_ran_without_dp(tmp_path, capsys):
    """--privacy.epsilon stays at its default 1 but fedavg trains without DP: summary.json
    must say "none" (what ran), not the configured "strict"."""
    out = tmp_path / "run"
    code = main(["train", *TINY_RUN, "--backend", "local", "--algorithm", "fedavg", "--out", str(out)])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    ledger = json.loads((out / "privacy.json").read_text())
    assert {row["privacy_mode"] for row in ledger["clients"]} == {"none"}
    assert summary["privacy_mode"] == "none"
