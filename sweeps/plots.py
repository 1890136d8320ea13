"""The sweep's PNG plots, drawn from ``results.parquet`` alone (matplotlib ``Figure``, Agg;
no pyplot state).

* ``bacc_vs_epsilon.png``: balanced accuracy vs target ε, one line per method, one panel
  per α; mean ± std over seeds; ε = ∞ at the right-most tick, labelled ∞.  Methods that
  ignore ε (run only at ∞) are dashed horizontal lines with their ± std band; every
  private method is a curve.  The bounds (``bounds.parquet``: local-only, pooled-real,
  centralised; not methods) are dotted horizontal lines with a hatched band (mean ± std
  over seeds).
* ``bacc_vs_alpha.png``: balanced accuracy vs α (IID right-most), one panel per ε.
* ``lambda_heatmap.png``: FedHypeVAE's balanced accuracy over the two λ weights with the
  most swept values, averaged over seeds, ε, α and the third λ (the title says which).

In the first two plots FedHypeVAE is shown at one *reference* λ setting when several
were swept: per weight, FedHypeVAEConfig's default if it was swept, else the lower
median of the swept values (the title names it).  Only trials with status ``ok`` count.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from sweeps.grid import FEDHYPEVAE, IID, LAMBDAS, alpha_sort_key, epsilon_text

METRIC = "bacc_mean"
LAMBDA_NAMES = {"lambda_mmd": "λ_MMD", "lambda_v": "λ_v", "lambda_lip": "λ_Lip"}


def finished(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials that reported final metrics."""
    if METRIC not in frame:
        return frame.iloc[0:0]
    return frame[(frame["status"] == "ok") & frame[METRIC].notna()]


def reference_lambdas(frame: pd.DataFrame) -> dict[str, float]:
    """The λ setting at which FedHypeVAE is drawn in the ε and α plots (module docstring)."""
    from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig

    rows = frame[frame["method"] == FEDHYPEVAE]
    chosen = {}
    for name in LAMBDAS:
        values = sorted(rows[name].dropna().unique()) if name in rows else []
        if not values:
            continue
        default = getattr(FedHypeVAEConfig, name)
        chosen[name] = default if default in values else values[(len(values) - 1) // 2]
    return chosen


def at_reference(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``frame`` with FedHypeVAE restricted to its reference λ, and a note naming that λ
    (empty when only one λ setting was swept)."""
    chosen = reference_lambdas(frame)
    if not chosen:
        return frame, ""
    is_fhv = frame["method"] == FEDHYPEVAE
    keep = ~is_fhv
    match = is_fhv.copy()
    for name, value in chosen.items():
        match &= np.isclose(frame[name].astype(float), value)
    keep |= match
    fhv = frame[is_fhv]
    several = any(fhv[name].nunique() > 1 for name in chosen)
    note = ("FedHypeVAE at " + ", ".join(f"{LAMBDA_NAMES[n]}={v:g}" for n, v in chosen.items())
            if several else "")
    return frame[keep], note


def seed_stats(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std (sample std; 0 for one seed) and seed count of ``METRIC`` per group of ``by``."""
    grouped = frame.groupby(by, dropna=False)[METRIC]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    return stats


def method_colors(methods) -> dict[str, tuple]:
    """A fixed color per method (registry order first), shared by every plot."""
    from matplotlib import colormaps

    from fedsim.algorithms.registry import NAMES

    order = list(NAMES) + sorted(set(methods) - set(NAMES))
    palette = colormaps["tab10"]
    return {m: palette(i % 10) for i, m in enumerate(order)}


def _save(figure, path: Path) -> Path:
    from fedsim.io_utils import atomic_path

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def _panels(count: int, width: float = 4.2, height: float = 3.4):
    from matplotlib.figure import Figure

    cols = min(count, 3)
    rows = math.ceil(count / cols)
    figure = Figure(figsize=(width * cols, height * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure, axes[:count]


def epsilon_positions(epsilons) -> dict[float, float]:
    """x position of each ε: finite ones evenly spaced in increasing order, ∞ one step to the right."""
    finite = sorted(e for e in set(epsilons) if not math.isinf(e))
    positions = {e: float(i) for i, e in enumerate(finite)}
    if any(math.isinf(e) for e in epsilons):
        positions[math.inf] = float(len(finite)) + (0.5 if finite else 0.0)
    return positions


def _line(ax, stats: pd.DataFrame, x: dict, key: str, label: str, color, **style) -> None:
    """One method's mean ± std over seeds along ``x``."""
    stats = stats.sort_values(key, key=lambda c: c.map(x))
    xs = np.array([x[v] for v in stats[key]])
    mean, std = 100 * stats["mean"].to_numpy(), 100 * stats["std"].to_numpy()
    ax.errorbar(xs, mean, yerr=std, color=color, marker="o", capsize=3, label=label, **style)
    ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.12)


def _flat(ax, mean: float, std: float, method: str, color) -> None:
    """A method that ignores ε: a dashed horizontal line with its ± std band."""
    ax.axhline(100 * mean, color=color, linestyle="--", label=f"{method} (no DP)")
    ax.axhspan(100 * (mean - std), 100 * (mean + std), xmin=0, xmax=1, color=color, alpha=0.08)


BOUND_STYLES = {"local-only": ":", "pooled-real": "-.", "centralised": (0, (1, 3))}


def _bound_band(ax, values: pd.Series, name: str) -> None:
    """A bound: its mean over seeds as a gray horizontal line, ± std as a hatched band."""
    mean, std = 100 * float(values.mean()), 100 * float(values.std()) if len(values) > 1 else 0.0
    ax.axhline(mean, color="0.3", linestyle=BOUND_STYLES.get(name, ":"), linewidth=1.2, label=f"{name} (bound)")
    ax.axhspan(mean - std, mean + std, color="0.5", alpha=0.12, hatch="//", linewidth=0)


def plot_bacc_vs_epsilon(frame: pd.DataFrame, path: Path, bounds: pd.DataFrame | None = None) -> Path | None:
    """Balanced accuracy vs ε per method, one panel per α, the bounds as bands (module
    docstring); None if no data."""
    data, note = at_reference(finished(frame))
    if data.empty:
        return None
    x = epsilon_positions(data["epsilon"])
    alphas = sorted(data["alpha"].unique(), key=alpha_sort_key)
    colors = method_colors(data["method"].unique())
    figure, axes = _panels(len(alphas))
    for ax, label in zip(axes, alphas):
        panel = data[data["alpha"] == label]
        for method in [m for m in colors if m in set(panel["method"])]:
            stats = seed_stats(panel[panel["method"] == method], ["epsilon"])
            if len(x) > 1 and list(stats["epsilon"]) == [math.inf]:
                _flat(ax, stats["mean"].iloc[0], stats["std"].iloc[0], method, colors[method])
            else:
                _line(ax, stats, x, "epsilon", method, colors[method])
        if bounds is not None and METRIC in bounds:
            for name, part in bounds[bounds["alpha"] == label].groupby("bound", sort=False):
                _bound_band(ax, part[METRIC], name)
        ax.set_xticks(list(x.values()), ["∞" if math.isinf(e) else f"{e:g}" for e in x])
        ax.set_title("IID" if label == IID else f"Dirichlet α = {label}")
        ax.set_xlabel("target ε per client")
        ax.grid(alpha=0.3)
    return _finish(figure, axes, data, "ε", note, path)


def _finish(figure, axes, data: pd.DataFrame, versus: str, note: str, path: Path) -> Path:
    """Shared y label, legend and title (with the seed count and any note) of the
    balanced-accuracy plots, then save."""
    axes[0].set_ylabel("balanced accuracy (%)")
    axes[0].legend(fontsize=8, loc="best")
    seeds = data["seed"].nunique()
    figure.suptitle(f"Balanced accuracy vs {versus} (mean ± std over {seeds} seed{'s' * (seeds > 1)})"
                    + (f"\n{note}" if note else ""))
    return _save(figure, path)


def plot_bacc_vs_alpha(frame: pd.DataFrame, path: Path) -> Path | None:
    """Balanced accuracy vs α per method, one panel per ε; None if no data."""
    data, note = at_reference(finished(frame))
    if data.empty:
        return None
    alphas = sorted(data["alpha"].unique(), key=alpha_sort_key)
    x = {label: float(i) for i, label in enumerate(alphas)}
    free = {m for m, g in data.groupby("method") if set(g["epsilon"]) == {math.inf}}
    epsilons = sorted(set(data["epsilon"]))
    if len(epsilons) > 1 and set(data.loc[data["epsilon"] == math.inf, "method"]) <= free:
        epsilons.remove(math.inf)  # ε-free methods are drawn, dashed, in every panel instead
    colors = method_colors(data["method"].unique())
    figure, axes = _panels(len(epsilons))
    for ax, epsilon in zip(axes, epsilons):
        panel = data[(data["epsilon"] == epsilon) | (data["method"].isin(free))]
        for method in [m for m in colors if m in set(panel["method"])]:
            stats = seed_stats(panel[panel["method"] == method], ["alpha"])
            if method in free and not math.isinf(epsilon):
                _line(ax, stats, x, "alpha", f"{method} (no DP)", colors[method], linestyle="--")
            else:
                _line(ax, stats, x, "alpha", method, colors[method])
        ax.set_xticks(list(x.values()), ["IID" if a == IID else a for a in alphas])
        ax.set_title(f"ε = {'∞' if math.isinf(epsilon) else format(epsilon, 'g')}")
        ax.set_xlabel("Dirichlet α (label skew; IID right-most)")
        ax.grid(alpha=0.3)
    return _finish(figure, axes, data, "α", note, path)


def heatmap_axes(frame: pd.DataFrame) -> tuple[str, str]:
    """The two λ weights with the most swept values (ties: λ_MMD, λ_v, λ_Lip order)."""
    counts = {name: frame[name].nunique() for name in LAMBDAS}
    ranked = sorted(LAMBDAS, key=lambda name: -counts[name])
    return ranked[0], ranked[1]


def plot_lambda_heatmap(frame: pd.DataFrame, path: Path) -> tuple[Path | None, str]:
    """FedHypeVAE's balanced accuracy over two λ weights; returns (path or None, a note)."""
    data = finished(frame)
    data = data[data["method"] == FEDHYPEVAE]
    if data.empty:
        return None, "no λ heat map: the sweep has no finished FedHypeVAE trial."
    rows_name, cols_name = heatmap_axes(data)
    grid = data.groupby([rows_name, cols_name])[METRIC].mean().unstack(cols_name).sort_index().sort_index(axis=1)
    single = [LAMBDA_NAMES[n] for n in LAMBDAS if data[n].nunique() <= 1]
    note = ""
    if grid.shape == (1, 1):
        note = ("the λ heat map has one cell: only one value of each λ weight was swept "
                "(pass several values to --lambda-mmd / --lambda-v / --lambda-lip).")
    elif single:
        note = f"only one value of {', '.join(single)} was swept."

    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.2 * grid.shape[1] + 3.2, 0.9 * grid.shape[0] + 2.2), layout="constrained")
    ax = figure.subplots()
    values = 100 * grid.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            shade = image.cmap(image.norm(value))
            light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.5
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="black" if light else "white", fontsize=9)
    ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
    ax.set_xlabel(LAMBDA_NAMES[cols_name])
    ax.set_ylabel(LAMBDA_NAMES[rows_name])
    figure.colorbar(image, ax=ax, label="balanced accuracy (%)")
    others = ", ".join(LAMBDA_NAMES[n] for n in LAMBDAS if n not in (rows_name, cols_name))
    epsilons = ", ".join(epsilon_text(e).replace("inf", "∞") for e in sorted(data["epsilon"].unique()))
    alphas = ", ".join(sorted(data["alpha"].unique(), key=alpha_sort_key))
    one_cell = grid.shape == (1, 1)
    ax.set_title(f"FedHypeVAE balanced accuracy, mean over seeds, ε ∈ {{{epsilons}}},\n"
                 f"α ∈ {{{alphas}}} and {others}" + ("\n(only one value of each λ was swept)" if one_cell else ""),
                 fontsize=9)
    return _save(figure, path), note


def write_plots(frame: pd.DataFrame, directory: Path,
                bounds: pd.DataFrame | None = None) -> tuple[list[Path], list[str]]:
    """Draw every plot into ``directory`` (``bounds`` as bands in the ε plot); return the
    written paths and notes on what was skipped."""
    directory = Path(directory)
    paths, notes = [], []
    for name, draw in (("bacc_vs_epsilon.png", lambda f, p: plot_bacc_vs_epsilon(f, p, bounds)),
                       ("bacc_vs_alpha.png", plot_bacc_vs_alpha)):
        path = draw(frame, directory / name)
        if path is None:
            notes.append(f"no {name}: the sweep has no finished trial.")
        else:
            paths.append(path)
    path, note = plot_lambda_heatmap(frame, directory / "lambda_heatmap.png")
    if path is not None:
        paths.append(path)
    if note:
        notes.append(note)
    return paths, notes
