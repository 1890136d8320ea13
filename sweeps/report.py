"""The sweep's Markdown summary (``summary.md``) and plots, from the results table alone."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sweeps.grid import FEDHYPEVAE, IID, LAMBDAS, alpha_sort_key, epsilon_text
from sweeps.plots import finished, write_plots
from sweeps.tune_progress import format_duration

GROUP = ["method", *LAMBDAS, "alpha", "epsilon"]


def _pct(mean: float, std: float | None = None) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None and math.isfinite(std) else "")


def _lambda_text(row) -> str:
    if row["method"] != FEDHYPEVAE:
        return ""
    return " ".join(f"{v:g}" for v in (row[n] for n in LAMBDAS))


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    from sweeps.plots import method_colors

    order = {m: i for i, m in enumerate(method_colors(frame["method"].unique()))}
    return frame.sort_values(["method", *LAMBDAS, "alpha", "epsilon"], kind="stable", key=lambda c: (
        c.map(order) if c.name == "method" else c.map(alpha_sort_key) if c.name == "alpha" else c))


def group_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (method, λ, α, ε): seeds, mean and std over seeds of acc/bacc/f1, mean
    across-client std of bacc, the largest ε spent, the privacy mode(s)."""
    data = finished(frame)
    if data.empty:
        return pd.DataFrame()
    grouped = data.groupby(GROUP, dropna=False)
    table = grouped.agg(seeds=("seed", "nunique"),
                        acc=("acc_mean", "mean"), acc_sd=("acc_mean", "std"),
                        bacc=("bacc_mean", "mean"), bacc_sd=("bacc_mean", "std"),
                        bacc_clients=("bacc_std", "mean"),
                        f1=("f1_mean", "mean"), f1_sd=("f1_mean", "std"),
                        eps_spent=("epsilon_max", "max"),
                        mode=("privacy_mode", lambda s: ", ".join(sorted(set(map(str, s)))))).reset_index()
    for column in ("acc_sd", "bacc_sd", "f1_sd"):
        table[column] = table[column].fillna(0.0)
    return _ordered(table).reset_index(drop=True)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def compact_table(table: pd.DataFrame) -> str:
    """Balanced accuracy (mean ± std over seeds), rows method (λ) × α, columns ε."""
    epsilons = sorted(table["epsilon"].unique())
    header = ["method", "λ_MMD λ_v λ_Lip", "α"] + [f"ε={epsilon_text(e).replace('inf', '∞')}" for e in epsilons]
    rows = []
    for _, part in table.groupby(["method", *LAMBDAS, "alpha"], dropna=False, sort=False):
        first = part.iloc[0]
        cells = {r["epsilon"]: _pct(r["bacc"], r["bacc_sd"]) for _, r in part.iterrows()}
        rows.append([first["method"], _lambda_text(first), "IID" if first["alpha"] == IID else first["alpha"]]
                    + [cells.get(e, "") for e in epsilons])
    return markdown_table(header, rows)


def full_table(table: pd.DataFrame) -> str:
    header = ["method", "λ_MMD λ_v λ_Lip", "α", "ε target", "seeds", "acc %", "bacc %",
              "bacc client std %", "macro-F1 %", "ε spent (max)", "privacy mode"]
    rows = [[r["method"], _lambda_text(r), "IID" if r["alpha"] == IID else r["alpha"],
             epsilon_text(r["epsilon"]), str(r["seeds"]), _pct(r["acc"], r["acc_sd"]),
             _pct(r["bacc"], r["bacc_sd"]), _pct(r["bacc_clients"]), _pct(r["f1"], r["f1_sd"]),
             f"{r['eps_spent']:.3g}", r["mode"]] for _, r in table.iterrows()]
    return markdown_table(header, rows)


def summary_markdown(frame: pd.DataFrame, plots: list[Path], notes: list[str], directory: Path,
                     wall_seconds: float | None = None) -> str:
    """The text of ``summary.md``."""
    status = frame["status"].value_counts()
    lines = ["# Privacy–utility sweep", ""]
    counts = ", ".join(f"{status.get(s, 0)} {s}" for s in ("ok", "error", "unfinished") if status.get(s, 0))
    from sweeps.plots import method_colors

    methods = [m for m in method_colors(frame["method"].unique()) if m in set(frame["method"])]
    lines.append(f"{len(frame)} trials ({counts}).  Methods: {', '.join(methods)}; "
                 f"target ε: {', '.join(epsilon_text(e) for e in sorted(frame['epsilon'].unique()))}; "
                 f"α: {', '.join(sorted(frame['alpha'].unique(), key=alpha_sort_key))}; "
                 f"seeds: {', '.join(str(s) for s in sorted(frame['seed'].unique()))}.")
    if wall_seconds is not None:
        lines.append(f"Wall time of this session: {format_duration(wall_seconds)}.")
    if "seconds" in frame:
        lines.append(f"Trial time, summed: {format_duration(float(frame['seconds'].fillna(0).sum()))}.")
    lines.append("")
    for path in plots:
        lines += [f"![{path.stem.replace('_', ' ')}]({path.relative_to(directory).as_posix()})", ""]
    for note in notes:
        lines.append(f"- Note: {note}")
    if notes:
        lines.append("")
    table = group_table(frame)
    if not table.empty:
        lines += ["## Balanced accuracy (%), mean ± std over seeds", "",
                  "Per trial: the mean across clients of each client's test balanced accuracy "
                  "(reference protocol); ± is the std of that mean over seeds.", "",
                  compact_table(table), "", "## All metrics", "", full_table(table), ""]
    if "privacy_note" in frame:
        for note in sorted(set(frame["privacy_note"].dropna()) - {""}):
            lines.append(f"- Privacy note: {note}")
        lines.append("")
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        lines += ["## Trials without results", "",
                  "Rerun the same command to retry them (finished trials are kept).", ""]
        lines += [f"- `{r['name']}`: {r['status']}" + (f" — {r['error']}" if isinstance(r["error"], str) else "")
                  for _, r in failed.iterrows()]
        lines.append("")
    return "\n".join(lines)


def bounds_table(bounds: pd.DataFrame) -> str:
    """The bounds' balanced accuracy (mean ± std over seeds), rows bound × α."""
    scores = [(s, t) for s, t in (("bacc_mean", "bacc %"), ("global_bacc_mean", "global bacc %")) if s in bounds]
    rows = []
    for (name, label), part in bounds.groupby(["bound", "alpha"], sort=False):
        rows.append([f"{name} (bound)", "IID" if label == IID else label, str(part["seed"].nunique())]
                    + [_pct(part[s].mean(), part[s].std() if len(part) > 1 else 0.0) for s, _ in scores])
    return markdown_table(["bound", "α", "seeds", *[t for _, t in scores]], rows)


def write_report(frame: pd.DataFrame, directory: Path, wall_seconds: float | None = None,
                 bounds: pd.DataFrame | None = None) -> list[Path]:
    """Write ``plots/*.png`` and ``summary.md`` under ``directory``; return their paths
    (``bounds``: :func:`sweeps.bounds.bounds_frame`, drawn as bands and tabulated)."""
    from fedsim.io_utils import atomic_path

    directory = Path(directory)
    plots, notes = write_plots(frame, directory / "plots", bounds)
    text = summary_markdown(frame, plots, notes, directory, wall_seconds)
    if bounds is not None and len(bounds):
        text += ("\n## Bounds (not methods)\n\nComputed once per α × seed from the federation (no DP, real data; "
                 "see fedsim.evaluation.bounds); ± is the std over seeds.\n\n" + bounds_table(bounds) + "\n")
    path = directory / "summary.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return [*plots, path]
