"""Benchmark: how much the probe protocol decides the bounds (issue #15).

For one seed, on the built-in datasets (10 clients; Dirichlet α = 0.3 and IID), prints a
Markdown table of the three bounds of :mod:`fedsim.evaluation.bounds` — ``local-only``,
``pooled-real``, ``centralised`` — as test balanced accuracy (mean ± std across clients,
``pooled-real`` at the λ chosen on validation by ``--selection``) under both probe
presets (``reference``: 100 Adam steps as the reference code; ``tuned``: converged
logistic regression, its C chosen on the validation split plus 5-fold out-of-fold
predictions of the probe's own train set, and the reference probe kept unless a paired
test on that evidence says the converged one is better; :mod:`fedsim.evaluation.probe`),
and the wall time of each evaluation.  The last column says whether ``tuned`` is at
least ``reference`` on that row.  A partition that cannot be built (a Dirichlet draw
leaving a client under ``--data.min-samples`` records: breast-cancer α = 0.3 at seeds 2
and 4) gets one row saying so.

    python benchmarks/protocol.py [--seed 0] [--datasets synthetic digits breast-cancer]
        [--standardize pooled-train] [--selection global] [--standard-errors 1.5] [--folds 5]

Takes ~13 minutes on 2 busy cores (the synthetic dataset's 8000 × 384 records dominate; the
tuned probe's cross-validation makes it ~5–7× the validation-only rule's time there).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from fedsim.data.federation import DataConfig, load_federation
from fedsim.errors import UserError
from fedsim.evaluation.blend import chosen_results, summarize
from fedsim.evaluation.bounds import BOUNDS
from fedsim.evaluation.classifier import PROBE_PRESETS, LinearProbeConfig
from fedsim.evaluation.downstream import EvaluationConfig


def partitions(alpha: float) -> list[tuple[str, DataConfig]]:
    """The two label-skew settings of the table: Dirichlet α and IID."""
    return [(f"α={alpha:g}", DataConfig(partition="dirichlet", alpha=alpha)), ("IID", DataConfig(partition="iid"))]


def bound_row(federation, name: str, evaluation: EvaluationConfig, seed: int) -> tuple[float, float, float]:
    """(mean, std across clients of the test BACC, seconds) of one bound under one preset."""
    start = time.perf_counter()
    evaluations = BOUNDS[name](federation, evaluation, seed)
    seconds = time.perf_counter() - start
    summary = summarize(chosen_results(evaluations, evaluation.selection, evaluation.lambda_guard,
                                         evaluation.lambda_metric))
    return summary["bacc_mean"], summary["bacc_std"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "digits", "breast-cancer"])
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--standardize", choices=["none", "pooled-train"], default="pooled-train")
    parser.add_argument("--selection", choices=["global", "per-client"], default="global")
    parser.add_argument("--standard-errors", type=float, default=LinearProbeConfig().standard_errors,
                        help="tuned probe: tie margin of the validation choice, in standard errors")
    parser.add_argument("--folds", type=int, default=LinearProbeConfig().folds,
                        help="tuned probe: cross-validation folds of each probe's train set (0: validation split only)")
    args = parser.parse_args()

    print(f"seed {args.seed}, {args.clients} clients, standardize {args.standardize}, "
          f"λ selection {args.selection}, tuned tie margin {args.standard_errors:g} SE, {args.folds} folds; test BACC mean ± std across clients (wall seconds)\n")
    print("| dataset | partition | bound | " + " | ".join(PROBE_PRESETS) + " | tuned ≥ reference |")
    print("|---|---|---|" + "---|" * len(PROBE_PRESETS) + "---|")
    total = time.perf_counter()
    for dataset in args.datasets:
        for label, data in partitions(args.alpha):
            data = replace(data, dataset=dataset, num_clients=args.clients, standardize=args.standardize)
            try:
                federation = load_federation(data, args.seed)
            except UserError as error:
                print(f"| {dataset} | {label} | — | cannot be built: {error} | | |", flush=True)
                continue
            for name in BOUNDS:
                cells, means = [], {}
                for preset in PROBE_PRESETS:
                    evaluation = EvaluationConfig(selection=args.selection, probe=LinearProbeConfig(
                        preset=preset, standard_errors=args.standard_errors, folds=args.folds))
                    mean, std, seconds = bound_row(federation, name, evaluation, args.seed)
                    means[preset] = mean
                    cells.append(f"{100 * mean:.1f} ± {100 * std:.1f} ({seconds:.1f} s)")
                verdict = "yes" if means["tuned"] >= means["reference"] else "**no**"
                print(f"| {dataset} | {label} | {name} | " + " | ".join(cells) + f" | {verdict} |", flush=True)
    print(f"\ntotal wall time {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
