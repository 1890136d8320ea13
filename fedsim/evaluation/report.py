"""The reports of the ``table`` command, built from the finished runs' records.

Files (all written atomically):

    table.md         Table 1 layout: rows = methods, column groups = configurations,
                     ACC, BACC and global-test BACC (%) mean ± std across clients
                     (averaged over seeds) and the ε spent, best mean per column in
                     bold; below it the bounds (not methods) in the same layout; then
                     the same with ± across seeds, the ε each method really spent, the
                     fidelity of its synthetic embeddings and the settings
    table.csv        the Table 1 layout as CSV ("mean ± std" cells, ± across clients),
                     methods then bounds (column ``Kind``)
    summary.csv      one numeric row per (row, configuration): every mean and both
                     spreads of acc/bacc/f1 (and global_acc/global_bacc/global_f1, the
                     global test set's), ε spent, fidelity metrics, seconds
    clients.parquet  one row per (row, configuration, seed, client)
    table.png        bar chart of ACC and BACC per configuration and method (± across clients)

A run record is a dict with ``row``, ``method``, ``kind`` (``method`` or ``bound``;
``method`` when absent), ``configuration``, ``configuration_label``, ``seed``,
``clients`` (per-client rows), ``epsilon_max``, ``privacy_mode``, ``note``,
``fidelity`` and ``seconds``.  The global-test columns appear when the runs scored
the global test set (``--evaluation.test global|both``), the client-split ones when
they scored the clients' test splits (``client|both``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from fedsim.evaluation.aggregate import SCORES, aggregate
from fedsim.evaluation.fidelity import METRICS as FIDELITY_METRICS
from fedsim.io_utils import atomic_path, write_parquet_atomic

KEYS = ["row", "method", "kind", "configuration", "configuration_label"]
TABLE_SCORES = (("acc", "ACC"), ("bacc", "BACC"), ("global_bacc", "global BACC"))
ALL_SCORES = (*SCORES, *(f"global_{name}" for name in SCORES))


def _identifiers(record: dict) -> dict:
    return {key: record.get(key, "method") if key == "kind" else record[key] for key in (*KEYS, "seed")}


def client_frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per (run, client) with the run's identifiers."""
    rows = []
    for record in records:
        for client in record["clients"]:
            rows.append(_identifiers(record) | client)
    return pd.DataFrame(rows)


def run_frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per run: ε spent, privacy mode, fidelity, seconds."""
    rows = []
    for record in records:
        row = _identifiers(record)
        row.update(epsilon_max=float(record["epsilon_max"]), privacy_mode=record["privacy_mode"],
                   note=record["note"], seconds=float(record["seconds"]))
        row.update({f"fidelity_{k}": float(v) for k, v in record["fidelity"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


def summary_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Scores aggregated over clients and seeds, joined with per-run means over seeds."""
    clients = client_frame(records)
    scores = aggregate(clients, KEYS, [s for s in ALL_SCORES if s in clients.columns])
    runs = run_frame(records)
    numeric = [c for c in runs.columns if c.startswith("fidelity_") or c in ("epsilon_max", "seconds")]
    means = runs.groupby(KEYS, sort=False)[numeric].mean().reset_index()
    modes = runs.groupby(KEYS, sort=False)[["privacy_mode", "note"]].first().reset_index()
    return scores.merge(means, on=KEYS).merge(modes, on=KEYS)


def _cell(mean: float, std: float, bold: bool) -> str:
    if not np.isfinite(mean):
        return "–"
    text = f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"**{text}**" if bold else text


def table_layout(summary: pd.DataFrame, spread: str, markdown: bool, epsilon: bool = False) -> pd.DataFrame:
    """Rows = ``summary``'s rows, columns = (configuration, ACC/BACC/global BACC) cells
    ``mean ± std`` (the scores the runs have), and with ``epsilon`` the ε spent;
    ``spread`` is ``clients`` or ``seeds``; the best mean of a column is bold (Markdown)."""
    methods = list(dict.fromkeys(summary["method"]))
    configurations = list(dict.fromkeys(summary["configuration_label"]))
    table = pd.DataFrame({"Method": methods})
    for label in configurations:
        part = summary[summary["configuration_label"] == label].set_index("method")
        for score, title in TABLE_SCORES:
            if f"{score}_mean" not in part:
                continue
            means = part[f"{score}_mean"]
            best = means.max() if means.notna().any() else math.nan
            table[f"{label} {title} (%)"] = [
                _cell(means.get(m, math.nan), part[f"{score}_std_{spread}"].get(m, math.nan),
                      markdown and m in means and means[m] == best)
                for m in methods]
        if epsilon:
            table[f"{label} ε"] = [_epsilon_text(part["epsilon_max"].get(m, math.nan)) for m in methods]
    return table


def methods_of(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of methods (not bounds)."""
    return summary[summary["kind"] != "bound"]


def bounds_of(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of bounds."""
    return summary[summary["kind"] == "bound"]


def csv_layout(summary: pd.DataFrame) -> pd.DataFrame:
    """table.csv: the methods' layout (with ε), then the bounds', with a ``Kind`` column."""
    parts = []
    for kind, part in (("method", methods_of(summary)), ("bound", bounds_of(summary))):
        if len(part):
            parts.append(table_layout(part, "clients", markdown=False, epsilon=kind == "method")
                         .assign(Kind=kind))
    return pd.concat(parts, ignore_index=True)


def _markdown(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join([":---"] + ["---:"] * (len(columns) - 1)) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _epsilon_text(value: float) -> str:
    return "∞ (no DP)" if not np.isfinite(value) else f"{value:.3f}"


def privacy_layout(summary: pd.DataFrame) -> pd.DataFrame:
    """ε really spent: the largest client ε, mean over seeds, per configuration (methods only)."""
    summary = methods_of(summary)
    methods = list(dict.fromkeys(summary["method"]))
    table = pd.DataFrame({"Method": methods})
    for label in dict.fromkeys(summary["configuration_label"]):
        part = summary[summary["configuration_label"] == label].set_index("method")
        table[f"{label} ε spent"] = [_epsilon_text(part["epsilon_max"].get(m, math.nan)) for m in methods]
    modes = summary.groupby("method", sort=False)["privacy_mode"].first()
    table["privacy mode"] = [modes[m] for m in methods]
    return table


def fidelity_layout(summary: pd.DataFrame) -> pd.DataFrame:
    """Fidelity metrics (mean over seeds) of the methods that release synthetic data."""
    rows = []
    for _, row in summary.iterrows():
        if not np.isfinite(row["fidelity_mmd2"]):
            continue
        rows.append({"Method": row["method"], "Configuration": row["configuration_label"],
                     **{name: f"{row[f'fidelity_{name}']:.4f}" for name in FIDELITY_METRICS}})
    return pd.DataFrame(rows)


def markdown_report(summary: pd.DataFrame, settings: dict[str, str]) -> str:
    """The whole ``table.md`` (module docstring)."""
    seeds = int(summary["seeds"].max())
    methods, bounds = methods_of(summary), bounds_of(summary)
    parts = [
        f"# Table 1 — {settings.get('dataset', '')}",
        f"ACC and BACC (%) on each client's test split, and global BACC on the class-balanced test set pooled "
        f"from all clients' test splits (simulator-side, scored only), at the λ chosen on validation data; "
        f"mean ± std **across clients**, averaged over {seeds} seed(s). Best mean per column in bold. "
        f"ε: the largest client ε spent (∞: no DP).",
    ]
    if len(methods):
        parts.append(_markdown(table_layout(methods, "clients", markdown=True, epsilon=True)))
    if len(bounds):
        parts += ["### Bounds (not methods)",
                  "Reference rows computed from the federation, not by any method (no DP, real data): "
                  "local-only = each client's probe on its own train split (no sharing); pooled-real = the "
                  "generators' protocol with real pooled train records instead of synthetic ones (the non-private "
                  "ceiling of any generator); centralised = one probe on the union of train splits.",
                  _markdown(table_layout(bounds, "clients", markdown=False))]
    parts += [
        "## Spread across seeds",
        "The same means; ± is the std across seeds of the per-seed client means (bounds last).",
        _markdown(pd.concat([table_layout(part, "seeds", markdown=True) for part in (methods, bounds) if len(part)],
                            ignore_index=True)),
        "## Privacy actually spent",
        "Largest per-client ε reported by the clients' accountants (mean over seeds); δ and the "
        "target ε are in the settings below.",
        _markdown(privacy_layout(summary)),
    ]
    notes: dict[str, list[str]] = {}
    for method, note in zip(methods["method"], methods["note"]):
        if isinstance(note, str) and note and method not in notes.setdefault(note, []):
            notes[note].append(method)
    if notes:
        parts.append("\n".join(f"* {', '.join(methods)}: {note}" for note, methods in notes.items()))
    fidelity = fidelity_layout(summary)
    if len(fidelity):
        parts += ["## Fidelity of the synthetic embeddings",
                  "Against the pooled validation splits (never used for training): MMD² (lower is better), "
                  "precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020), k = 5.",
                  _markdown(fidelity)]
    parts += ["## Settings", "\n".join(f"* {key}: {value}" for key, value in settings.items())]
    return "\n\n".join(parts) + "\n"


def bar_chart(summary: pd.DataFrame, path: Path) -> None:
    """BACC and global BACC (ACC and BACC without a global test set) per configuration
    (groups) and row (bars, bounds included), ± across clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(summary["method"]))
    configurations = list(dict.fromkeys(summary["configuration_label"]))
    scores = [(s, t) for s, t in TABLE_SCORES if f"{s}_mean" in summary][-2:]  # BACC and global BACC when scored
    figure, axes = plt.subplots(1, len(scores), figsize=(6 + 1.2 * len(configurations) * len(methods) / 3, 4),
                                sharey=True, squeeze=False)
    axes = axes[0]
    width = 0.8 / len(methods)
    positions = np.arange(len(configurations))
    for axis, (score, title) in zip(axes, scores):
        for index, method in enumerate(methods):
            part = summary[summary["method"] == method].set_index("configuration_label")
            means = [100 * part[f"{score}_mean"].get(c, np.nan) for c in configurations]
            stds = [100 * part[f"{score}_std_clients"].get(c, np.nan) for c in configurations]
            axis.bar(positions + (index - (len(methods) - 1) / 2) * width, means, width, yerr=stds,
                     capsize=2, label=method)
        axis.set_xticks(positions, configurations)
        axis.set_title(f"{title} (%)")
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean ± std across clients")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(methods), 6), fontsize="small",
                  frameon=False)
    figure.tight_layout(rect=(0, 0.1 if len(methods) <= 6 else 0.16, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_reports(records: Sequence[dict], out: Path, settings: dict[str, str]) -> pd.DataFrame:
    """Write every file of the module docstring into ``out``; return the summary frame."""
    clients = client_frame(records)
    write_parquet_atomic(pa.Table.from_pandas(clients, preserve_index=False), out / "clients.parquet")
    summary = summary_frame(records)
    _write_text(summary.to_csv(index=False), out / "summary.csv")
    _write_text(csv_layout(summary).to_csv(index=False), out / "table.csv")
    _write_text(markdown_report(summary, settings), out / "table.md")
    bar_chart(summary, out / "table.png")
    return summary
