"""The sweep's bounds: one row per (bound, α, seed), on the base command's data and evaluation."""

from __future__ import annotations

import dataclasses

from fedsim.commands.train import TrainCommand
from fedsim.data.federation import DataConfig
from fedsim.data.synthetic import SyntheticConfig
from fedsim.evaluation.classifier import LinearProbeConfig
from fedsim.evaluation.downstream import EvaluationConfig
from sweeps.bounds import bounds_frame
from sweeps.grid import build_grid


def test_bounds_per_alpha_and_seed():
    base = TrainCommand(data=DataConfig(num_clients=3, partition_seed=0,
                                        synthetic=SyntheticConfig(n_samples=300, dim=8, num_classes=3)),
                        evaluation=EvaluationConfig(probe=LinearProbeConfig(steps=20)))
    grid = build_grid(("fedavg",), (1.0,), ("0.5", "iid"), (1.0,), (1e-3,), (1e-3,), (0, 1), base=base)
    frame = bounds_frame(base, grid)
    assert len(frame) == 3 * 2 * 2
    assert set(frame["bound"]) == {"local-only", "pooled-real", "centralised"}
    assert {"bacc_mean", "bacc_std", "global_bacc_mean", "global_acc_mean"} <= set(frame.columns)
    assert frame[["bacc_mean", "global_bacc_mean"]].apply(lambda c: c.between(0, 1)).all().all()
    client_only = dataclasses.replace(base, evaluation=dataclasses.replace(base.evaluation, test="client"))
    assert "global_bacc_mean" not in bounds_frame(client_only, grid, ("local-only",))
