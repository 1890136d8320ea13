"""Learning-rate sweep for the FedAvg/FedProx baselines (how the default lr was chosen).

For each dataset × partition × lr: FedAvg of the linear classifier (10 clients,
``--rounds`` rounds × 1 local epoch, batch 128, SGD momentum 0.5, wd 5e-4, no DP),
then the mean across clients of the VALIDATION accuracy of the global model (the
choice reads validation data only; test accuracy is printed for information).

    python benchmarks/fedavg_lr.py [--rounds 50] [--lrs 0.001 0.01 0.1 0.3 0.5 1 3]
                                   [--datasets synthetic digits breast-cancer]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import prepare, simulate
from fedsim.data.federation import DataConfig
from fedsim.evaluation.blend import chosen_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 1e-2, 0.1, 0.3, 0.5, 1.0, 3.0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "digits", "breast-cancer"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{'dataset':<10} {'partition':<10} {'lr':>7} {'val_acc':>8} {'test_acc':>8} {'sec':>5}")
    for dataset in args.datasets:
        for partition in ("iid", "dirichlet"):
            for lr in args.lrs:
                command = TrainCommand(algorithm="fedavg", seed=args.seed, progress=False,
                                       data=DataConfig(dataset=dataset, partition=partition, partition_seed=0),
                                       training=TrainingConfig(rounds=args.rounds),
                                       fedavg=replace(FedAvgConfig(), lr=lr), backend="local")
                started = time.perf_counter()
                prepared = prepare(command)
                rows = chosen_results(simulate(command, prepared).evaluations, "global")
                val = float(np.mean([r["val_acc"] for r in rows]))
                test = float(np.mean([r["acc"] for r in rows]))
                print(f"{dataset:<10} {partition:<10} {lr:>7.3g} {100 * val:>8.2f} {100 * test:>8.2f} "
                      f"{time.perf_counter() - started:>5.1f}", flush=True)


if __name__ == "__main__":
    main()
