"""A real sweep through Ray Tune: the small grid (2 ε × 2 α × 1 seed) of tiny federations,
its Parquet files and plots, and resuming without rerunning finished trials.

Each sweep pays a Ray Tune start and a worker process per trial, so the small sweep runs
once for this module (``small_sweep``): its results serve the checks of its outputs, of
resuming it, and as the local-backend reference of the ``--backend ray`` test."""

from __future__ import annotations

import contextlib
import io
import math

import pandas as pd
import pytest

from sweep_helpers import TINY_FEDERATION, TINY_MODELS
from sweeps.privacy_utility import main

SMALL = ["--methods", "fedhypevae", "--epsilons", "1", "inf", "--alphas", "0.3", "iid", "--seeds", "0",
         *TINY_FEDERATION, "--num-cpus", "2", "--progress-interval", "5"]


@pytest.fixture
def local_ray(monkeypatch, ray_cluster):
    """The suite's local Ray (2 CPUs); the sweep finds it initialised and reuses it."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield


@pytest.fixture(scope="module")
def small_sweep(ray_cluster, tmp_path_factory):
    """The SMALL sweep run once on the suite's local Ray: ``(its --out, what it printed to stderr)``."""
    out = tmp_path_factory.mktemp("small-sweep") / "sweep"
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(err):
        patch.delenv("RAY_ADDRESS", raising=False)
        code = main(["run", "--out", str(out), *SMALL])
    assert code == 0, err.getvalue()[-3000:]
    return out, err.getvalue()


def test_small_sweep_writes_results_and_plots(small_sweep):
    out, err = small_sweep
    assert "sweep: 4 trials" in err and "sweep: 4/4 trials done" in err and "ETA" in err

    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 4 and (results["status"] == "ok").all()
    assert set(results["epsilon"]) == {1.0, math.inf} and set(results["alpha"]) == {"0.3", "iid"}
    assert set(results["partition"]) == {"dirichlet", "iid"}
    for column in ("acc_mean", "acc_std", "bacc_mean", "bacc_std", "f1_mean", "f1_std", "epsilon_max"):
        assert results[column].notna().all(), column
    private = results[results["epsilon"] == 1.0]
    assert (private["epsilon_max"] <= 1.0 + 1e-6).all() and (private["privacy_mode"] == "strict").all()
    assert results.loc[results["epsilon"] == math.inf, "epsilon_max"].map(math.isinf).all()

    rounds = pd.read_parquet(out / "rounds.parquet")  # per-round reports through Tune
    assert sorted(rounds.groupby("name")["round"].max()) == [2, 2, 2, 2] and len(rounds) == 8
    assert "epsilon_max" in rounds

    for name in ("bacc_vs_epsilon.png", "bacc_vs_alpha.png", "lambda_heatmap.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert "| fedhypevae | 1 0.001 0.001 | 0.3 |" in (out / "summary.md").read_text()
    assert results["global_bacc_mean"].notna().all()  # the class-balanced global test set (--evaluation.test both)
    bounds = pd.read_parquet(out / "bounds.parquet")    # once per α × seed, not per trial
    assert len(bounds) == 3 * 2 and set(bounds["bound"]) == {"local-only", "pooled-real", "centralised"}
    assert "## Bounds (not methods)" in (out / "summary.md").read_text()
    run_dirs = sorted(p.name for p in (out / "runs").iterdir())
    assert run_dirs == sorted(results["name"])


def test_a_finished_sweep_resumes_without_rerunning_and_refuses_another_grid(small_sweep, capfd, local_ray):
    out, _ = small_sweep
    results = pd.read_parquet(out / "results.parquet")
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}
    assert len(stamps) == 4

    # Same command again: the finished experiment is restored, nothing reruns.
    assert main(["run", "--out", str(out), *SMALL]) == 0
    assert "(resuming)" in capfd.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    again = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(again.drop(columns="trial_id"), results.drop(columns="trial_id"))

    # A different grid in the same --out, or --no-resume, is refused before anything runs.
    assert main(["run", "--out", str(out), *SMALL, "--seeds", "1"]) == 2
    assert "different grid" in capfd.readouterr().err
    assert main(["run", "--out", str(out), *SMALL, "--no-resume"]) == 2
    assert "already holds a sweep" in capfd.readouterr().err


def test_errored_trials_rerun_on_resume(tmp_path, capfd, local_ray):
    """A trial that failed (here: its embedding file was not readable yet; a missing file is
    refused before the sweep starts) is rerun by the same command once the problem is fixed;
    the sweep then completes."""
    from fedsim.data.io import write_embeddings
    from fedsim.data.synthetic import SyntheticConfig, make_synthetic

    data = tmp_path / "emb.parquet"
    data.write_text("not written yet")
    out = tmp_path / "sweep"
    argv = ["run", "--out", str(out), "--methods", "fedhypevae", "--epsilons", "inf", "--alphas", "iid",
            "--seeds", "0", "--data.dataset", str(data), "--data.num-clients", "3", "--training.rounds", "1",
            *TINY_MODELS]
    assert main(argv) == 1
    err = capfd.readouterr().err
    assert "errored" in err and "rerun the same command" in err
    failed = pd.read_parquet(out / "results.parquet")
    assert list(failed["status"]) == ["error"] and str(data) in failed["error"].iloc[0]
    assert "Trials without results" in (out / "summary.md").read_text()

    write_embeddings(data, make_synthetic(SyntheticConfig(n_samples=600, dim=16), 0), {})
    assert main(argv) == 0
    assert "(resuming)" in capfd.readouterr().err
    assert list(pd.read_parquet(out / "results.parquet")["status"]) == ["ok"]


def test_ray_backend_trials_run_client_actors_in_a_placement_group(small_sweep, tmp_path, local_ray):
    """--backend ray: each trial reserves a placement group (its driver + one bundle per
    client actor, here 2 clients per actor: ⌈3 / 2⌉ = 2 actors) and gets the same results
    as the local backend (same seed, same config: the small sweep's ε = inf, iid trial).
    The group takes all 2 CPUs (0.5 + 2 × 0.75), so the run can only finish if the client
    actors are scheduled inside it."""
    assert main(["run", "--out", str(tmp_path / "ray"), "--methods", "fedhypevae", "--epsilons", "inf",
                 "--alphas", "iid", "--seeds", "0", *TINY_FEDERATION, "--backend", "ray",
                 "--cpus-per-trial", "0.5", "--cpus-per-client", "0.75", "--clients-per-actor", "2"]) == 0
    results = pd.read_parquet(small_sweep[0] / "results.parquet")
    local = results[(results["epsilon"] == math.inf) & (results["alpha"] == "iid")]
    ray_ = pd.read_parquet(tmp_path / "ray" / "results.parquet")
    assert list(ray_["status"]) == ["ok"] and len(local) == 1
    for column in ("acc_mean", "bacc_mean", "f1_mean", "bacc_std"):
        assert ray_[column].iloc[0] == pytest.approx(local[column].iloc[0], abs=1e-9), column
    config = (tmp_path / "ray" / "runs" / ray_["name"].iloc[0] / "config.json").read_text()
    assert '"backend": "ray"' in config
