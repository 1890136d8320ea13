"""FedHypeVAE against ``dp-stats`` on the SAME DP release (issue 16: "FedHypeVAE ≥ dp-stats").

Statistics-first FedHypeVAE (the default, ``stats-only``) and ``dp-stats`` both spend the
whole ε on one Gaussian release of the clients' class statistics (same clipping, same σ_s,
same accountant), then post-process it: ``dp-stats`` samples class-conditional Gaussians,
FedHypeVAE warm-starts its hypernetwork CVAE on them, fits the meta-code (Eq. 11) and
samples Eq. 12.  Run separately (``privacy_utility.py``) each method draws its own secure
noise, so their difference carries two noise draws (2–4 points across seeds).  Here each
FedHypeVAE run's releases (``pool.release``: asked again, the same release, no new
mechanism) also build ``dp-stats``' generator (:func:`fedsim.algorithms.dp_stats.class_generator`
with the default options) — exactly what a ``dp-stats`` run with that noise draw would
release — and both generators are evaluated under the same protocol, rule and seeds.  The
paired difference is the generator's own effect: what the hypernetwork adds to the same
information.

    OMP_NUM_THREADS=1 python benchmarks/paired_release.py --epsilons 1 8 inf --seeds 0 1 2 \\
        [--dataset synthetic] [--evaluations prediction:client:1x data:balanced:4x] [--jobs 2]

Rows (``--out``, default ``benchmarks/results/paired_release.parquet``; resumable, one row per
(dataset, ε, seed, protocol, rule)): ``fhv_*`` and ``stats_*`` are :func:`privacy_utility.scores`
of each generator (BACC %: ``val_syn`` on the pooled validation splits, ``test_syn`` /
``test_blend`` on the client test splits, ``val_cv`` the rule's split-half validation score);
the printed table is the mean ± std over seeds of FedHypeVAE − dp-stats.  ``--probe-folds``
as in ``privacy_utility.py`` (default 0 here: C on validation alone, the grids' setting).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd
from privacy_utility import (
    REFERENCE_EVALUATION,
    command_for,
    evaluation_config,
    scores,
    train_run,
    validation_set,
)

from fedsim.algorithms.dp_stats import DPStatsConfig, class_generator
from fedsim.commands.worker_pool import (
    check_jobs,
    resolve_jobs,
    run_in_workers,
    worker_threads,
)
from fedsim.evaluation.downstream import evaluate_generator

RESULTS = Path(__file__).parent / "results" / "paired_release.parquet"
RULES = ("per-client:accuracy:1", "per-client:accuracy:0")
KEY = ["dataset", "placement", "epsilon", "seed", "evaluation", "rule"]
COLUMNS = ("val_syn", "test_syn", "test_blend", "val_cv")


def run_one(dataset: str, placement: str, epsilon: float, seed: int, rounds: int, evaluations: tuple[str, ...],
            probe_folds: int) -> list[dict]:
    """One FedHypeVAE run (``--privacy.noise-placement placement``); both generators of its
    release under every protocol and rule."""
    started = time.perf_counter()
    configs = [evaluation_config(spec, probe_folds) for spec in evaluations]
    method = "fedhypevae" if placement == "client" else "fedhypevae-aggregate"
    prepared, pool, result = train_run(command_for(method, epsilon, seed, rounds, dataset, configs[0]))
    federation = prepared.federation
    releases = pool.release(pool.client_ids)  # the run's own releases, not a second mechanism
    generators = {"fhv": result.artifact, "stats": class_generator(releases, DPStatsConfig())}
    validation = validation_set(federation)
    rows = []
    for spec, config in zip(evaluations, configs):
        scored = {}
        for name, generator in generators.items():
            # one pass: the client val/test splits, and the pooled validation splits as the "global" set
            client_evaluations = [evaluate_generator(c, generator, config, seed, validation) for c in federation.clients]
            scored[name] = {rule: scores(client_evaluations, client_evaluations, rule, seed) for rule in RULES}
        for rule in RULES:
            row = {"dataset": dataset, "placement": placement, "epsilon": epsilon, "seed": seed, "evaluation": spec, "rule": rule,
                   "rounds": rounds, "probe_folds": probe_folds}
            for name in generators:
                row.update({f"{name}_{column}": scored[name][rule][column] for column in COLUMNS})
            row["seconds"] = time.perf_counter() - started
            rows.append(row)
    return rows


def run_key(key: tuple) -> list[dict]:
    return run_one(*key)


def print_table(frame: pd.DataFrame) -> None:
    print("\n## FedHypeVAE − dp-stats on the same release, points (mean ± std over seeds)\n")
    print("| dataset | placement | protocol | rule | ε | seeds | " + " | ".join(f"Δ {c}" for c in COLUMNS)
          + " | FedHypeVAE / dp-stats test_syn |")
    print("|---|---|---|---|---:|---:|" + "---:|" * (len(COLUMNS) + 1))
    for (dataset, placement, evaluation, rule, epsilon), rows in frame.groupby(
            ["dataset", "placement", "evaluation", "rule", "epsilon"]):
        cells = []
        for column in COLUMNS:
            difference = rows[f"fhv_{column}"] - rows[f"stats_{column}"]
            spread = f" ± {difference.std():.1f}" if len(rows) > 1 else ""
            cells.append(f"{difference.mean():+.1f}{spread}")
        print(f"| {dataset} | {placement} | {evaluation} | {rule} | {epsilon:g} | {len(rows)} | " + " | ".join(cells)
              + f" | {rows.fhv_test_syn.mean():.1f} / {rows.stats_test_syn.mean():.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 8.0, math.inf])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--placement", choices=["client", "aggregate"], default="client",
                        help="--privacy.noise-placement of the FedHypeVAE runs (aggregate: every client in the "
                             "cohort); dp-stats' generator pools the same releases (column placement)")
    parser.add_argument("--evaluations", nargs="+", default=[REFERENCE_EVALUATION, "data:balanced:4x"])
    parser.add_argument("--probe-folds", type=int, default=0)
    parser.add_argument("--jobs", type=lambda text: text if text == "auto" else int(text), default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args()
    frame = pd.read_parquet(args.out) if args.out.exists() else pd.DataFrame(columns=KEY)
    if "placement" not in frame:  # written before --placement: client placement
        frame.insert(1, "placement", "client")
    if not args.print_only:
        check_jobs(args.jobs, "--jobs")
        for spec in args.evaluations:
            evaluation_config(spec, args.probe_folds)
        done = set(frame[KEY].itertuples(index=False, name=None))
        todo = [(args.dataset, args.placement, epsilon, seed, args.rounds, tuple(args.evaluations), args.probe_folds)
                for seed in args.seeds for epsilon in args.epsilons
                if any((args.dataset, args.placement, epsilon, seed, spec, rule) not in done
                       for spec in args.evaluations for rule in RULES)]
        jobs = resolve_jobs(args.jobs, 0, len(todo))
        finished = ((key, run_key(key)) for key in todo) if jobs == 1 else \
            run_in_workers(run_key, todo, jobs, worker_threads(jobs, 0))
        for _, rows in finished:
            rows = [row for row in rows if tuple(row[k] for k in KEY) not in done]
            print(f"{rows[0]['dataset']} {rows[0]['placement']} ε={rows[0]['epsilon']:g} seed {rows[0]['seed']}: "
                  f"{rows[0]['seconds']:.0f} s", flush=True)
            frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True) if len(frame) else pd.DataFrame(rows)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(args.out, index=False)
    print_table(frame)


if __name__ == "__main__":
    main()
