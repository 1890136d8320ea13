"""dp-stats on the built-in synthetic dataset: balanced accuracy per ε and covariance form.

Each row is one ``python -m fedsim.run train --algorithm dp-stats --backend local
--privacy.epsilon E --dp-stats.covariance FORM`` run (default data: 10 clients,
Dirichlet α = 0.3; reference probe), reported as mean test BACC over clients (%) of the
local probe alone (λ = 1), of the probe trained on the synthetic set alone (λ = 0) and
of the blend at the λ chosen on validation (``global`` rule), with the release's σ_s.
One run takes about 10 s (``full`` and ``lowrank`` longer at large d).

    python benchmarks/dp_stats_forms.py --epsilons inf 8 1 --forms diag full lowrank [--rank 8]
        [--shrinkage 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from fedsim.algorithms.dp_stats import DPStatsConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import run_configuration
from fedsim.evaluation.blend import select_lambdas
from fedsim.privacy.config import PrivacyConfig


def bacc_at(evaluations, index_of) -> float:
    return 100 * float(np.mean([e.test["bacc"][index_of(e)] for e in evaluations]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[float("inf"), 8.0, 1.0])
    parser.add_argument("--forms", nargs="+", default=["diag", "full", "lowrank"])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--shrinkage", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| ε | covariance | σ_s | local only | synthetic only | chosen (λ) |")
    print("|---|---|---:|---:|---:|---:|")
    for epsilon in args.epsilons:
        for form in args.forms:
            command = TrainCommand(algorithm="dp-stats", backend="local", seed=args.seed, progress=False,
                                   checkpoint_every=0, privacy=PrivacyConfig(epsilon=epsilon),
                                   training=TrainingConfig(rounds=1),
                                   dp_stats=DPStatsConfig(covariance=form, rank=args.rank,
                                                          shrinkage=args.shrinkage))
            done = run_configuration(command)
            evaluations = done.result.evaluations
            chosen = select_lambdas(evaluations, "global")[0]
            lambdas = evaluations[0].lambdas
            sigmas = [r.stats_noise_multiplier for r in done.result.privacy_records]
            sigma = "—" if sigmas[0] is None else f"{statistics.median(sigmas):.3f}"
            print(f"| {epsilon:g} | {form} | {sigma} | {bacc_at(evaluations, lambda e: lambdas.index(1.0)):.1f} | "
                  f"{bacc_at(evaluations, lambda e: lambdas.index(0.0)):.1f} | "
                  f"{bacc_at(evaluations, lambda e: chosen):.1f} ({lambdas[chosen]:g}) |", flush=True)


if __name__ == "__main__":
    main()
