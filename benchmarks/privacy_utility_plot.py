"""The privacy–utility plot of ``benchmarks/privacy_utility.py``'s records (issue 16).

One panel per downstream protocol (``--evaluations``; DP-FedAvg/DP-FedProx, which release a
model, in every panel): client-test BACC (%, ``test_blend``,
λ chosen on validation by ``--rule``; ``--column test_syn`` for synthetic only) against ε,
mean ± std over seeds, one line per method; the bounds (``local-only``, ``pooled-real``,
ε-free) as horizontal lines with their seed band.  Only rows of one ``--dataset`` and one
``--probe-folds`` and ``--partition`` are drawn; a (method, ε) needs every seed of ``--seeds`` to be drawn, so
a partial grid shows as missing points, not as a mean of fewer draws.

    python benchmarks/privacy_utility_plot.py benchmarks/results/privacy_utility_grid.parquet \\
        --out docs/privacy_utility_synthetic.png [--rule per-client:accuracy:1] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from sweeps.plots import epsilon_positions, method_colors

BOUNDS = {"local-only": ":", "pooled-real": "-."}
GLOBAL_MODELS = ("dp-fedavg", "dp-fedprox")
"""Methods that release a model, not a synthetic set: the same under every downstream protocol
(their rows, of whichever ``--evaluations`` they were run with, are drawn in every panel)."""
METHOD_ORDER = ("dp-fedavg", "dp-stats", "fedhypevae")
FIXED_COLORS = {"dp-fedavg": "tab:green", "dp-fedprox": "tab:olive", "dp-stats": "tab:pink", "fedhypevae": "tab:blue"}


def seed_complete(rows: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """The rows of the (method, ε) groups that hold every seed of ``seeds`` (one row each)."""
    rows = rows[rows["seed"].isin(seeds)].drop_duplicates(["method", "epsilon", "seed"], keep="last")
    complete = rows.groupby(["method", "epsilon"])["seed"].transform("nunique") == len(seeds)
    return rows[complete]


def draw(frame: pd.DataFrame, evaluations: list[str], rule: str, column: str, seeds: list[int], title: str):
    """The figure (matplotlib ``Figure``, no pyplot state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0 * len(evaluations), 4.0), layout="constrained")
    axes = figure.subplots(1, len(evaluations), sharey=True, squeeze=False).ravel()
    colors = method_colors(list(frame["method"].unique())) | FIXED_COLORS
    for ax, evaluation in zip(axes, evaluations):
        in_panel = (frame["evaluation"] == evaluation) | frame["method"].isin(GLOBAL_MODELS)
        rows = seed_complete(frame[in_panel & (frame["rule"] == rule)], seeds)
        x = epsilon_positions(rows.loc[~rows["method"].isin(BOUNDS), "epsilon"].unique())
        for bound, style in BOUNDS.items():
            values = rows.loc[rows["method"] == bound, "test_blend"]
            if len(values):
                mean, std = values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0
                ax.axhline(mean, color="black", linestyle=style, label=f"{bound} (bound)")
                ax.axhspan(mean - std, mean + std, color="black", alpha=0.06)
        for method in sorted(set(rows["method"]) - set(BOUNDS),
                             key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else 99, m)):
            stats = rows[rows["method"] == method].groupby("epsilon")[column].agg(["mean", "std"]).reset_index()
            stats = stats.sort_values("epsilon", key=lambda c: c.map(x))
            xs, std = [x[e] for e in stats["epsilon"]], stats["std"].fillna(0.0)
            ax.errorbar(xs, stats["mean"], yerr=std, marker="o", capsize=3, color=colors[method], label=method)
            ax.fill_between(xs, stats["mean"] - std, stats["mean"] + std, color=colors[method], alpha=0.12)
        ax.set_xticks(list(x.values()), ["∞" if math.isinf(e) else f"{e:g}" for e in x])
        ax.set_xlabel("ε (δ = 1e-4)")
        ax.set_title(evaluation)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"client-test BACC % ({'blended' if column == 'test_blend' else 'synthetic only'})")
    axes[-1].legend(loc="best", fontsize=8)
    figure.suptitle(f"{title} — λ rule {rule}, mean ± std over seeds {', '.join(map(str, seeds))}")
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", type=Path, nargs="+", help="Parquet files written by privacy_utility.py")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--evaluations", nargs="+", default=["prediction:client:1x", "data:balanced:4x"])
    parser.add_argument("--rule", default="per-client:accuracy:1")
    parser.add_argument("--column", choices=["test_blend", "test_syn"], default="test_blend")
    parser.add_argument("--probe-folds", type=int, default=0)
    parser.add_argument("--partition", default="dirichlet-0.3", help="the records' partition column (iid or dirichlet-0.3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", help="draw only these methods and bounds (default: all)")
    args = parser.parse_args()
    for path in args.records:
        if not path.exists():
            parser.exit(2, f"privacy_utility_plot.py: error: {path} does not exist (write it with "
                           "benchmarks/privacy_utility.py --out)\n")
    frames = [pd.read_parquet(path) for path in args.records]
    for records in frames:
        if "partition" not in records:  # written before privacy_utility.py --partition: the default
            records["partition"] = "dirichlet-0.3"
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[(frame["dataset"] == args.dataset) & (frame["probe_folds"] == args.probe_folds)
                  & (frame["partition"] == args.partition)]
    if args.methods:
        frame = frame[frame["method"].isin(args.methods)]
    if frame.empty:
        parser.exit(2, f"privacy_utility_plot.py: error: no records of --dataset {args.dataset} with "
                       f"--probe-folds {args.probe_folds} in {', '.join(map(str, args.records))}\n")
    figure = draw(frame, args.evaluations, args.rule, args.column, args.seeds, args.dataset)
    from fedsim.io_utils import atomic_path

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
