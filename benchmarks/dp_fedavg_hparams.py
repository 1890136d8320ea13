"""How the DP rows' hyper-parameters were chosen: dp-fedavg's lr × Poisson batch B
(× local epochs) on VALIDATION accuracy (the test splits are never read here).

For each dataset × ε × (lr, B, E): dp-fedavg (FedAvg of the linear classifier under
record-level DP-SGD at that ε, δ = 1e-5, C = 1, the accountant of the generators) on
10 clients with Dirichlet α = 0.3 label skew, ``--rounds`` rounds, one seed; then the
mean across clients of the global model's validation accuracy.  The DP noise is the
seeded stream (``reproducible_noise``), so every cell is repeatable and the grid
points of one cell see the same noise source.  The last table ranks
every (lr, B, E) by its mean validation accuracy over the (dataset, ε) cells; the
defaults of ``fedsim.algorithms.dp_fedavg`` (also dp-fedprox's) come from it (its
module docstring holds the measured table and the reasoning).

    python benchmarks/dp_fedavg_hparams.py [--rounds 50] [--lrs 0.1 0.5 2]
        [--batch-sizes 64 256 1024] [--local-epochs 1] [--epsilons 1 8]
        [--datasets synthetic digits]

About ten minutes on a loaded 2-core machine with the defaults (36 runs).
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace

import numpy as np

from fedsim.algorithms.dp_fedavg import DPFedAvgConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import prepare, simulate
from fedsim.data.federation import DataConfig
from fedsim.evaluation.blend import chosen_results
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig


def validation_accuracy(dataset: str, epsilon: float, lr: float, batch_size: int, local_epochs: int,
                        rounds: int, seed: int) -> float:
    """Mean across clients of dp-fedavg's validation accuracy (no test set is scored)."""
    command = TrainCommand(algorithm="dp-fedavg", seed=seed, progress=False, backend="local",
                           data=DataConfig(dataset=dataset, partition="dirichlet", alpha=0.3, partition_seed=0),
                           privacy=PrivacyConfig(epsilon=epsilon, delta=1e-5, reproducible_noise=True),
                           training=TrainingConfig(rounds=rounds, local_epochs=local_epochs, batch_size=batch_size),
                           dp_fedavg=replace(DPFedAvgConfig(), lr=lr), evaluation=EvaluationConfig(test="client"))
    prepared = prepare(command)
    rows = chosen_results(simulate(command, prepared).evaluations, "global")
    return float(np.mean([r["val_acc"] for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.5, 2.0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--local-epochs", type=int, nargs="+", default=[1])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 8.0])
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "digits"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    grid = list(itertools.product(args.lrs, args.batch_sizes, args.local_epochs))
    scores: dict[tuple, list[float]] = {point: [] for point in grid}
    print(f"{'dataset':<10} {'ε':>4} {'lr':>6} {'B':>5} {'E':>2} {'val_acc %':>9} {'sec':>5}")
    for dataset, epsilon in itertools.product(args.datasets, args.epsilons):
        for lr, batch_size, epochs in grid:
            started = time.perf_counter()
            value = validation_accuracy(dataset, epsilon, lr, batch_size, epochs, args.rounds, args.seed)
            scores[(lr, batch_size, epochs)].append(value)
            print(f"{dataset:<10} {epsilon:>4g} {lr:>6g} {batch_size:>5} {epochs:>2} {100 * value:>9.2f} "
                  f"{time.perf_counter() - started:>5.1f}", flush=True)
    print("\nmean validation accuracy over (dataset, ε), best first:")
    for (lr, batch_size, epochs), values in sorted(scores.items(), key=lambda item: -np.mean(item[1])):
        print(f"  lr {lr:>5g}  B {batch_size:>5}  E {epochs}  {100 * np.mean(values):6.2f} %  "
              f"(min {100 * np.min(values):.2f} %)")


if __name__ == "__main__":
    main()
