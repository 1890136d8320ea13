"""Results table → plots and summary.md, and the ``plot`` subcommand (no Ray needed)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from fedsim.commands.train import TrainCommand
from sweeps.collect import read_results, trial_row, write_frame
from sweeps.grid import build_grid
from sweeps.plots import at_reference, epsilon_positions, heatmap_axes, reference_lambdas
from sweeps.privacy_utility import main
from sweeps.report import write_report


def fake_results(lambda_mmd=(0.1, 1.0), lambda_v=(0.0, 1e-3)) -> pd.DataFrame:
    """A results table as the sweep writes it, with made-up metrics (one trial errored)."""
    grid = build_grid(("fedhypevae", "fedavg", "dp-cvae"), (1.0, 8.0, math.inf), ("0.3", "iid"),
                      lambda_mmd, lambda_v, (1e-3,), (0, 1), base=TrainCommand())
    rng = np.random.default_rng(0)
    rows = []
    for point, alpha, seed in itertools.product(grid.points(), grid.alphas, grid.seeds):
        config = {"point": point, "alpha": alpha, "seed": seed}
        eps = point["epsilon"]
        bacc = 0.5 + 0.05 * math.log2(min(eps, 16)) + 0.1 * (alpha == "iid") + 0.01 * rng.standard_normal()
        metrics = {"final": 1, "acc_mean": bacc + 0.02, "acc_std": 0.05, "bacc_mean": bacc, "bacc_std": 0.04,
                   "f1_mean": bacc - 0.02, "f1_std": 0.05, "epsilon_max": "inf" if math.isinf(eps) else 0.99 * eps,
                   "privacy_mode": "none" if math.isinf(eps) else "strict", "lambda": 0.5, "seconds": 3.0,
                   "privacy_note": "", "trial_id": "x", "time_total_s": 3.1}
        rows.append(trial_row(config, metrics, None))
    rows[-1] = trial_row({"point": grid.points()[-1], "alpha": "iid", "seed": 1}, {"round": 1, "final": 0},
                         RuntimeError("Traceback ...\nfedsim.errors.UserError: boom."))
    return pd.DataFrame(rows)


def test_trial_rows_hold_config_status_and_final_metrics():
    frame = fake_results()
    assert frame["epsilon_max"].dtype == float and math.isinf(frame["epsilon_max"].max())
    assert {"blend_lambda", "bacc_mean", "alpha_value", "partition", "lambda_mmd"} <= set(frame.columns)
    assert "time_total_s" not in frame and "final" not in frame
    assert (frame["status"] == "error").sum() == 1
    failed = frame[frame["status"] == "error"].iloc[0]
    assert failed["error"] == "fedsim.errors.UserError: boom." and math.isnan(failed["bacc_mean"])
    assert frame.loc[frame["method"] == "fedavg", "lambda_mmd"].isna().all()
    assert set(frame.loc[frame["method"] == "fedavg", "epsilon"]) == {math.inf}


def test_plot_helpers():
    frame = fake_results()
    assert epsilon_positions([8.0, 1.0, math.inf]) == {1.0: 0.0, 8.0: 1.0, math.inf: 2.5}
    assert reference_lambdas(frame) == {"lambda_mmd": 1.0, "lambda_v": 1e-3, "lambda_lip": 1e-3}
    data, note = at_reference(frame)
    assert note == "FedHypeVAE at λ_MMD=1, λ_v=0.001, λ_Lip=0.001"
    assert data.loc[data["method"] == "fedhypevae", "lambda_mmd"].eq(1.0).all()
    assert (data["method"] == "fedavg").sum() == (frame["method"] == "fedavg").sum()
    assert heatmap_axes(frame[frame["method"] == "fedhypevae"]) == ("lambda_mmd", "lambda_v")


def test_report_writes_three_plots_and_a_summary(tmp_path):
    paths = write_report(fake_results(), tmp_path, wall_seconds=75)
    names = sorted(p.name for p in paths)
    assert names == ["bacc_vs_alpha.png", "bacc_vs_epsilon.png", "lambda_heatmap.png", "summary.md"]
    for path in paths:
        assert path.stat().st_size > 0
    assert (tmp_path / "plots" / "bacc_vs_epsilon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "summary.md").read_text()
    assert "64 trials (63 ok, 1 error)" in text and "Wall time of this session: 1m15s." in text
    assert "| method | λ_MMD λ_v λ_Lip | α | ε=1 | ε=8 | ε=∞ |" in text
    assert "![bacc vs epsilon](plots/bacc_vs_epsilon.png)" in text
    assert "fedsim.errors.UserError: boom." in text
    assert not list(tmp_path.rglob("*.tmp"))


def test_single_lambda_values_still_draw_a_heat_map_and_say_so(tmp_path):
    paths = write_report(fake_results(lambda_mmd=(1.0,), lambda_v=(1e-3,)), tmp_path)
    assert (tmp_path / "plots" / "lambda_heatmap.png") in paths
    assert "only one value of each λ weight was swept" in (tmp_path / "summary.md").read_text()


def test_plot_subcommand_redraws_from_parquet(tmp_path, capsys):
    write_frame(fake_results(), tmp_path / "results.parquet")
    assert read_results(tmp_path / "results.parquet")["epsilon"].dtype == float
    assert main(["plot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "plots" / "bacc_vs_alpha.png").is_file() and (tmp_path / "summary.md").is_file()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["plot", "--out", "{tmp}"], "--out"),
    (["--alphas", "0.3", "skewed", "--out", "{tmp}"], "--alphas"),
    (["run", "--methods", "nope", "--out", "{tmp}"], "--methods"),
    (["--cpus-per-trial", "0", "--out", "{tmp}"], "--cpus-per-trial"),
])
def test_bad_input_exits_2_with_one_sentence(tmp_path, capsys, argv, message):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def fake_bounds() -> pd.DataFrame:
    rows = [{"bound": name, "alpha": alpha, "seed": seed, "bacc_mean": level + 0.01 * seed, "bacc_std": 0.02,
             "global_bacc_mean": level - 0.05, "global_bacc_std": 0.02}
            for name, level in (("local-only", 0.4), ("pooled-real", 0.8), ("centralised", 0.9))
            for alpha in ("0.3", "iid") for seed in (0, 1)]
    return pd.DataFrame(rows)


def test_epsilon_plot_draws_bounds_as_bands_and_private_methods_as_curves(tmp_path, monkeypatch):
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Polygon, Rectangle

    import sweeps.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure) or path)
    bounds = fake_bounds()
    plots.plot_bacc_vs_epsilon(fake_results(), tmp_path / "p.png", bounds)
    axes = [ax for ax in figures[0].axes if ax.get_visible()]
    assert len(axes) == 2  # α = 0.3 and IID
    for ax, alpha in zip(axes, ("0.3", "iid")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        for name in ("local-only", "pooled-real", "centralised"):
            y = lines[f"{name} (bound)"].get_ydata()
            expected = bounds[(bounds["bound"] == name) & (bounds["alpha"] == alpha)]["bacc_mean"]
            assert np.allclose(y, 100 * expected.mean())  # a horizontal line at the mean over seeds
        spans = [p for p in ax.patches if isinstance(p, (Polygon, Rectangle)) and p.get_hatch() == "//"]
        assert len(spans) == 3  # one band per bound
        heights = [p.get_height() if isinstance(p, Rectangle) else float(np.ptp(np.asarray(p.get_xy())[:, 1]))
                   for p in spans]
        assert np.allclose(heights, 2 * 100 * bounds.groupby(["bound", "alpha"])["bacc_mean"].std().iloc[0])
        # the private methods are curves over ε (one point per finite ε and ∞), fedavg (no DP) a flat line
        curves = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(curves) >= 2 and "fedavg (no DP)" in lines


def test_report_with_bounds_tabulates_them(tmp_path):
    write_report(fake_results(), tmp_path, bounds=fake_bounds())
    text = (tmp_path / "summary.md").read_text()
    assert "## Bounds (not methods)" in text and "| pooled-real (bound) | IID | 2 |" in text
