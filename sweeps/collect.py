"""Tune's results → tables: ``results.parquet`` (one row per trial) and ``rounds.parquet``
(one row per trial and round, as reported to Tune).

``results.parquet`` columns:

* config: ``name`` (the trial's run-directory name), ``method``, ``epsilon`` (target ε,
  ``inf`` = no DP), ``alpha`` (label: a number or ``iid``), ``alpha_value`` (NaN for
  iid), ``partition``, ``lambda_mmd``, ``lambda_v``, ``lambda_lip`` (NaN for
  baselines), ``seed``;
* ``status``: ``ok`` (final metrics reported), ``error`` or ``unfinished``; ``error``:
  the last line of the error, if any; ``trial_id``;
* the run's summary (``fedsim.commands.training_run``): ``acc_mean``, ``acc_std``,
  ``bacc_mean``, ``bacc_std``, ``f1_mean``, ``f1_std`` (across clients),
  ``epsilon_max`` (ε spent, the largest over clients), ``delta``, ``privacy_mode``,
  ``privacy_note``, ``blend_lambda`` (the summary's λ of the blend), ``rounds``,
  ``seconds``, ``run_dir``, and whatever else the summary holds.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from fedsim.errors import UserError
from sweeps.grid import IID, LAMBDAS, alpha_value, trial_name

CONFIG_COLUMNS = ("name", "method", "epsilon", "alpha", "alpha_value", "partition", *LAMBDAS, "seed")
# Keys Tune adds to every report; they are not results.
BOOKKEEPING = {"timestamp", "time_this_iter_s", "done", "training_iteration", "trial_id", "date",
               "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
               "iterations_since_restore", "checkpoint_dir_name", "should_checkpoint", "final",
               "config", "experiment_tag"}
RENAMED = {"lambda": "blend_lambda"}


def config_columns(config: dict) -> dict:
    """The config columns of one trial."""
    point, label = config["point"], config["alpha"]
    row = {"name": trial_name(config), "method": point["method"], "epsilon": float(point["epsilon"]),
           "alpha": label, "alpha_value": alpha_value(label),
           "partition": "iid" if label == IID else "dirichlet"}
    for name in LAMBDAS:
        row[name] = math.nan if point.get(name) is None else float(point[name])
    row["seed"] = int(config["seed"])
    return row


def _error_line(error) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def trial_row(config: dict, metrics: dict | None, error, trial_id: str | None = None) -> dict:
    """The results row of one trial from its config, last report and error."""
    metrics = dict(metrics or {})
    final = metrics.get("final") == 1
    row = config_columns(config)
    row["status"] = "ok" if final else ("error" if error is not None else "unfinished")
    row["error"] = _error_line(error) if error is not None else None
    row["trial_id"] = trial_id or metrics.get("trial_id")
    if final:
        for key, value in metrics.items():
            if key in BOOKKEEPING or key.startswith("config/") or key == "round":
                continue
            row[RENAMED.get(key, key)] = _number(value)
    return row


def _number(value):
    """Non-finite numbers that JSON carried as text (the ledger writes ε = ∞ as "inf") → float."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "-inf", "infinity", "-infinity", "nan"):
        return float(value.strip().lower().replace("infinity", "inf"))
    return value


def results_frames(result_grid) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, rounds)`` of a Tune ``ResultGrid`` (see the module docstring)."""
    rows, rounds = [], []
    for result in result_grid:
        config = result.config or {}
        if "point" not in config:
            continue
        trial_id = Path(result.path).name.split("-", 1)[0] if result.path else None
        row = trial_row(config, result.metrics, result.error, trial_id)
        rows.append(row)
        history = result.metrics_dataframe
        if history is not None and len(history) and "final" in history:
            per_round = history[history["final"] == 0]
            keep = [c for c in per_round.columns if c not in BOOKKEEPING and not c.startswith("config/")]
            per_round = per_round[keep].dropna(axis=1, how="all").copy()
            for position, key in enumerate(("name", "method", "epsilon", "alpha", "seed")):
                if key not in per_round:
                    per_round.insert(position, key, row[key])
            rounds.append(per_round)
    results = pd.DataFrame(rows)
    if len(results):
        results = results.sort_values(["method", "epsilon", "alpha", "seed", "name"], kind="stable",
                                      key=_sort_key).reset_index(drop=True)
    rounds_frame = pd.concat(rounds, ignore_index=True) if rounds else pd.DataFrame()
    return results, rounds_frame


def _sort_key(column: pd.Series) -> pd.Series:
    if column.name == "alpha":
        return column.map(lambda label: math.inf if label == IID else float(label))
    return column


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` to the Parquet file ``path`` atomically."""
    import pyarrow as pa

    from fedsim.io_utils import write_parquet_atomic

    return write_parquet_atomic(pa.Table.from_pandas(frame, preserve_index=False), path)


def read_results(path: Path) -> pd.DataFrame:
    """Read a sweep's ``results.parquet`` (``UserError`` naming --out if it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--out {path.parent} holds no results.parquet; run the sweep there first "
                        "(python -m sweeps.privacy_utility run --out ...).")
    frame = pd.read_parquet(path)
    missing = {"method", "epsilon", "alpha", "seed", "status"} - set(frame.columns)
    if missing:
        raise UserError(f"{path} is not a sweep results file: it lacks the column(s) {', '.join(sorted(missing))}.")
    return frame
