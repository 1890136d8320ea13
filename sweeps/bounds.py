"""The sweep's bounds (:mod:`fedsim.evaluation.bounds`: local-only, pooled-real,
centralised): reference rows that are not methods and do not depend on ε, so they are
computed once per configuration (α × seed) from the federation, in the driver after
the trials (probes only: seconds), and written to ``bounds.parquet``.

Columns: ``bound``, ``alpha``, ``seed`` and the mean and std across clients of every
score the runs report (``acc``, ``bacc``, ``f1`` on the clients' test splits and their
``global_`` versions on the class-balanced global test set, per ``--evaluation.test``):
``bacc_mean``, ``bacc_std``, ``global_bacc_mean``, ...  The BACC-vs-ε plot draws each
bound as a horizontal band (mean ± std over seeds).
"""

from __future__ import annotations

import pandas as pd

from fedsim.data.federation import load_federation
from fedsim.evaluation.blend import summarize
from fedsim.evaluation.bounds import BOUNDS, bound_results
from sweeps.grid import Grid, partition_data


def bounds_frame(base, grid: Grid, names: tuple[str, ...] = tuple(BOUNDS)) -> pd.DataFrame:
    """One row per (bound, α, seed) of ``grid`` on ``base``'s data and evaluation options."""
    rows = []
    for label in grid.alphas:
        data = partition_data(base, label)
        for seed in grid.seeds:
            federation = load_federation(data, seed)
            for name in names:
                rows.append({"bound": name, "alpha": label, "seed": int(seed),
                             **summarize(bound_results(name, federation, base.evaluation, seed))})
    return pd.DataFrame(rows)
