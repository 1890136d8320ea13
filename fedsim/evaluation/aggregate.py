"""Aggregating per-client results over clients and seeds (the table's two spreads).

Per (method, configuration, seed): mean and std of each metric across clients.  Then
per (method, configuration), over seeds:

* ``<m>_mean``         mean over seeds of the per-seed client means,
* ``<m>_std_clients``  mean over seeds of the per-seed std across clients (the paper's
                       "± across clients"),
* ``<m>_std_seeds``    std over seeds of the per-seed client means (run-to-run spread).

Standard deviations are population ones (ddof = 0), like
:func:`fedsim.evaluation.blend.summarize`; NaN scores (an empty split) are skipped.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

SCORES = ("acc", "bacc", "f1")


def per_seed(clients: pd.DataFrame, keys: Sequence[str], scores: Sequence[str] = SCORES) -> pd.DataFrame:
    """Mean and std across clients of every score, per ``keys`` + seed."""
    grouped = clients.groupby([*keys, "seed"], sort=False)
    out = grouped.agg(**{f"{s}_mean": (s, "mean") for s in scores},
                      **{f"{s}_std": (s, lambda v: float(np.nanstd(v))) for s in scores},
                      clients=("client", "nunique"))
    return out.reset_index()


def across_seeds(seeds: pd.DataFrame, keys: Sequence[str], scores: Sequence[str] = SCORES) -> pd.DataFrame:
    """The three columns per score of the module docstring, per ``keys``."""
    grouped = seeds.groupby(list(keys), sort=False)
    columns: dict[str, tuple[str, str | Callable[[np.ndarray], float]]] = {}
    for s in scores:
        columns[f"{s}_mean"] = (f"{s}_mean", "mean")
        columns[f"{s}_std_clients"] = (f"{s}_std", "mean")
        columns[f"{s}_std_seeds"] = (f"{s}_mean", lambda v: float(np.nanstd(v)))
    out = grouped.agg(**columns, seeds=("seed", "nunique"))
    return out.reset_index()


def aggregate(clients: pd.DataFrame, keys: Sequence[str], scores: Sequence[str] = SCORES) -> pd.DataFrame:
    """``across_seeds(per_seed(clients))``."""
    return across_seeds(per_seed(clients, keys, scores), keys, scores)
