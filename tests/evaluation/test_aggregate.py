"""Aggregation over clients, then seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedsim.evaluation.aggregate import aggregate, per_seed


def frame() -> pd.DataFrame:
    rows = []
    for seed, values in ((0, [0.6, 0.8]), (1, [0.7, 0.7])):
        for client, value in enumerate(values):
            rows.append({"method": "m", "configuration": "iid", "seed": seed, "client": client,
                         "acc": value, "bacc": value / 2, "f1": np.nan if client else value})
    return pd.DataFrame(rows)


def test_per_seed_mean_and_std_across_clients():
    seeds = per_seed(frame(), ["method", "configuration"])
    assert seeds["acc_mean"].tolist() == pytest.approx([0.7, 0.7])
    assert seeds["acc_std"].tolist() == pytest.approx([0.1, 0.0])
    assert seeds["f1_mean"].tolist() == pytest.approx([0.6, 0.7])  # NaN skipped


def test_across_seeds_reports_both_spreads():
    row = aggregate(frame(), ["method", "configuration"]).iloc[0]
    assert row["acc_mean"] == pytest.approx(0.7)
    assert row["acc_std_clients"] == pytest.approx(0.05)   # mean of 0.1 and 0.0
    assert row["acc_std_seeds"] == pytest.approx(0.0)      # both seeds average 0.7
    assert row["f1_std_seeds"] == pytest.approx(0.05)
    assert row["seeds"] == 2
