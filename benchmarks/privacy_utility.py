"""Privacy–utility table (issue 16): BACC of FedHypeVAE variants against ``dp-stats``,
``dp-fedavg`` and the local-only / pooled-real bounds over ε and seeds.

Every run is the project's own code: methods through
:func:`fedsim.commands.training_run.prepare` / :func:`~fedsim.commands.training_run.run_rounds`
(the ``train`` command's body, local backend, ``--evaluation.test both``), bounds through
:data:`fedsim.evaluation.bounds.BOUNDS`.  Per run (mean over clients, %):

* ``val_client``: accuracy on each client's OWN validation split at the chosen λ (the
  criterion λ is chosen by), mean over clients — the validation proxy of ``test_blend``;
* ``val_cv``: the λ rule's split-half score on the clients' validation splits (choose on
  one half, score BACC on the other; :mod:`fedsim.evaluation.rule_validation`) — the number
  to choose a λ RULE by (``val_client`` favours the rules that over-fit validation);
* ``val_syn``, ``val_blend``: synthetic-only (λ = 0; for ``dp-fedavg`` the global model)
  and blended (λ chosen on validation, ``global`` rule) BACC on the pooled validation
  splits of all clients — the numbers to CHOOSE with;
* ``test_syn``, ``test_blend`` (client test splits) and ``global_syn``, ``global_blend``
  (the class-balanced global test set) — the numbers to REPORT;
* ``spread``: synthetic within-class std / real within-class std (pooled train data,
  averaged over classes and dimensions), for generators.

``--evaluations`` (default ``prediction:client:1x``, the reference protocol) lists
downstream protocols ``MIX:LABELS:SIZE`` (``--evaluation.mix``, ``--evaluation.synthetic-labels``,
``--evaluation.synthetic-size``; e.g. ``data:balanced:4x``): a method is trained once and
its generator evaluated under each (column ``evaluation``; the bounds follow each too);
``--first-global-only`` halves the cost of the others by not scoring them on the global test set.
``--rules`` (default ``global:accuracy:0``, the reference's) lists λ choices
``RULE:METRIC:GUARD`` (``--evaluation.selection``, ``--evaluation.lambda-metric``,
``--evaluation.lambda-guard``; e.g. ``per-client:balanced:1``): every rule is applied to the
same evaluations (column ``rule``; the choice reads validation only), so rules cost nothing.
``--probe-folds K`` (default 5, the tuned probe's default; column ``probe_folds``, −1 in rows
written before the option) sets ``--evaluation.probe.folds`` of every evaluation: 0 scores
the probes' C on the validation split alone (evaluation protocol revision 1), ~6× cheaper
for the data mix, whose union probes are the dearest fits of a run.

``--partition iid`` runs the IID partition (column ``partition``: ``iid`` or ``dirichlet-0.3``, the
default; rows written before the column are the default's).

Resumable: one Parquet row per finished run and evaluation in ``--out`` (default
``benchmarks/results/privacy_utility.parquet``); a run already there is skipped.
``--print-only [FILE ...]`` prints the tables of ``--out`` merged with the given result files
(a dataset's grid, its one-seed runs and its rule measurements: one table per dataset; a
run found in several files counts once, from the first) and runs nothing.
``--jobs N`` (default ``auto``: one per CPU) runs N at a time in worker processes
(:mod:`fedsim.commands.worker_pool`); the rows are written by this process, as each run finishes.

    python benchmarks/privacy_utility.py --epsilons 1 8 inf --seeds 0 \\
        --methods local-only pooled-real dp-stats fedhypevae [--rounds 30] [--dataset synthetic]

Methods: ``local-only``, ``pooled-real`` (bounds, ε-free), ``dp-stats``, ``dp-fedavg``,
``fedhypevae`` (the default: stats-first), ``fedhypevae-dp-sgd`` (today's DP-SGD-only),
the table's ablations ``fedhypevae-no-hypernetwork``, ``-no-mmd``, ``-no-metacode``, ``-paper-mode`` (:data:`ABLATIONS`),
``fedhypevae-share-S`` (stats-first with ``--fedhypevae.statistics-share S``, the rest on
the small-footprint DP-SGD with ``--training.batch-size 512``), ``fedhypevae-warm-N`` (``--fedhypevae.warm-start-steps N``), ``fedhypevae-no-obsvar`` (no observation variance);
any of ``dp-stats`` and the FedHypeVAE names with the suffix ``-aggregate`` (``dp-stats-aggregate``,
``fedhypevae-aggregate``): the same run with ``--privacy.noise-placement aggregate`` (the
statistics' noise split over the clients, default ``--privacy.min-cohort``: all of them);
``dp-stats-lowrank`` (``--dp-stats.covariance lowrank``, rank 8);
any of them with the suffix ``-diag`` (``dp-stats-diag``, ``fedhypevae-diag``,
``fedhypevae-aggregate-diag``): the diagonal second moments at every ε
(``--privacy.covariance diag``, ``--dp-stats.covariance diag``; the default ``auto`` releases the
full matrix at ε = ∞).  Rows written before ``auto`` (2026-12-03) are the diagonal release
and are stored under the ``-diag`` names.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim.algorithms.dp_stats import DPStatsConfig
from fedsim.algorithms.fedhypevae import FedHypeVAEConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.commands.table_run import ABLATIONS as TABLE_ABLATIONS
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import prepare, run_rounds
from fedsim.commands.worker_pool import check_jobs, resolve_jobs, run_in_workers, worker_threads
from fedsim.data.federation import DataConfig
from fedsim.evaluation.blend import ClientEvaluation, select_lambdas
from fedsim.evaluation.bounds import BOUNDS
from fedsim.evaluation.classifier import LinearProbeConfig
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_generator
from fedsim.evaluation.global_test import GlobalTestSet, global_test_set
from fedsim.evaluation.rule_validation import split_half_score
from fedsim.privacy.config import PrivacyConfig
from fedsim.seeding import numpy_rng, torch_generator
from fedsim.simulation import LocalClientPool

RESULTS = Path(__file__).parent / "results" / "privacy_utility.parquet"
BOUND_NAMES = ("local-only", "pooled-real")
ABLATIONS = {row.key: row for row in TABLE_ABLATIONS}
"""The table's ablation rows as method names (``fedhypevae-no-hypernetwork``, ``-no-mmd``,
``-no-metacode``, ``-paper-mode``; :data:`fedsim.commands.table_run.ABLATIONS`)."""
REFERENCE_EVALUATION = "prediction:client:1x"
REFERENCE_RULE = "global:accuracy:0"
KEY = ["dataset", "partition", "method", "epsilon", "seed", "rounds", "evaluation", "rule", "probe_folds"]


def evaluation_config(spec: str, probe_folds: int = LinearProbeConfig().folds) -> EvaluationConfig:
    """The ``EvaluationConfig`` (both test sets) of ``MIX:LABELS:SIZE``, the probes' folds ``probe_folds``."""
    mix, labels, size = spec.split(":")
    config = EvaluationConfig(test="both", mix=mix, synthetic_labels=labels, synthetic_size=size,  # type: ignore[arg-type]
                              probe=LinearProbeConfig(folds=probe_folds))
    config.validate()
    return config


def lambda_rule(spec: str) -> tuple[str, str, float]:
    """``(selection, metric, guard)`` of ``RULE:METRIC:GUARD``, validated as the CLI's options."""
    selection, metric, guard = spec.split(":")
    config = EvaluationConfig(selection=selection, lambda_metric=metric, lambda_guard=float(guard))  # type: ignore[arg-type]
    config.validate()
    return config.selection, config.lambda_metric, config.lambda_guard


def validation_set(federation) -> GlobalTestSet:
    """The pooled validation splits of all clients (scored like a test set, for choosing)."""
    return GlobalTestSet(np.concatenate([c.x_val for c in federation.clients]),
                         np.concatenate([c.y_val for c in federation.clients]))


def partition_name(partition: str) -> str:
    """The ``partition`` column: ``iid`` or ``dirichlet-<α>`` (α the ``--data.alpha`` default)."""
    return "iid" if partition == "iid" else f"dirichlet-{DataConfig().alpha:g}"


def command_for(method: str, epsilon: float, seed: int, rounds: int, dataset: str,
                evaluation: EvaluationConfig = EvaluationConfig(test="both"), partition: str = "dirichlet") -> TrainCommand:
    """The ``train`` command of one method run (local backend, both test sets)."""
    fedhypevae, dp_stats = FedHypeVAEConfig(), DPStatsConfig()
    placement, privacy_changes = "client", {}
    if method.endswith("-diag"):  # the diagonal release at every ε (the default is auto: full at ε = ∞)
        method, dp_stats = method.removesuffix("-diag"), DPStatsConfig(covariance="diag")
        privacy_changes["covariance"] = "diag"
    if method == "dp-stats-lowrank":  # the full release kept as its top eigenpairs plus a diagonal
        method, dp_stats = "dp-stats", replace(dp_stats, covariance="lowrank")
    if method.endswith("-aggregate"):  # the statistics' noise at the aggregate (secure aggregation)
        method, placement = method.removesuffix("-aggregate"), "aggregate"
    algorithm = method
    if method.startswith("fedhypevae"):
        algorithm = "fedhypevae"
        if method == "fedhypevae-dp-sgd":
            fedhypevae = replace(fedhypevae, training="dp-sgd", observation_variance=False)
        elif method == "fedhypevae-no-obsvar":
            fedhypevae = replace(fedhypevae, observation_variance=False)
        elif method.startswith("fedhypevae-share-"):
            fedhypevae = replace(fedhypevae, statistics_share=float(method.rsplit("-", 1)[1]))
        elif method.startswith("fedhypevae-warm-"):
            fedhypevae = replace(fedhypevae, warm_start_steps=int(method.rsplit("-", 1)[1]))
        elif method in ABLATIONS:
            fedhypevae = replace(fedhypevae, **dict(ABLATIONS[method].method_changes))
            privacy_changes.update(ABLATIONS[method].privacy_changes)
    # the small DP footprint runs few, large Poisson batches (B = 512: 4 steps a local epoch)
    batch_size = 512 if method.startswith("fedhypevae-share-") else None
    return TrainCommand(algorithm=algorithm, backend="local", seed=seed, progress=False, checkpoint_every=0,
                        data=DataConfig(dataset=dataset, partition=partition),  # type: ignore[arg-type]
                        privacy=PrivacyConfig(epsilon=epsilon, noise_placement=placement, **privacy_changes),
                        training=TrainingConfig(rounds=rounds, batch_size=batch_size), evaluation=evaluation,
                        fedhypevae=fedhypevae, dp_stats=dp_stats)


def train_run(command: TrainCommand, prepared=None, global_test: GlobalTestSet | None = None):
    """``train``'s body for ``command`` in this process (local pool; ``prepared``: ``prepare(command)``
    when already made): ``(prepared, pool, result)``; the pool keeps the clients (their releases)."""
    prepared = prepared or prepare(command)
    server = prepared.module.make_server(prepared.spec, prepared.settings)
    pool = LocalClientPool(prepared.federation, prepared.spec, prepared.settings)
    return prepared, pool, run_rounds(command, prepared.settings, server, pool, global_test=global_test)


def scores(test_evals: list[ClientEvaluation], val_evals: list[ClientEvaluation],
           rule: str = REFERENCE_RULE, seed: int = 0) -> dict[str, float]:
    """Mean BACC over clients (%) at λ = 0 (or the only λ) and at the λ chosen on each
    client's validation split by ``rule`` (:func:`lambda_rule`); ``val_cv``: the rule's
    split-half validation score (:func:`fedsim.evaluation.rule_validation.split_half_score`,
    20 splits), the number to choose a rule by."""
    selection, metric, guard = lambda_rule(rule)
    chosen = select_lambdas(test_evals, selection, guard, metric)  # type: ignore[arg-type]
    val_cv = split_half_score(test_evals, selection, guard, metric, numpy_rng(seed, "rule-cv"), 20)  # type: ignore[arg-type]
    lambdas = test_evals[0].lambdas
    syn = lambdas.index(0.0) if 0.0 in lambdas else 0

    def mean(evals, metric, index_of) -> float:
        return 100 * float(np.mean([e.test[metric][index_of(i)] for i, e in enumerate(evals)]))
    return {"val_syn": mean(val_evals, "global_bacc", lambda i: syn),
            "val_blend": mean(val_evals, "global_bacc", lambda i: chosen[i]),
            "test_syn": mean(test_evals, "bacc", lambda i: syn),
            "test_blend": mean(test_evals, "bacc", lambda i: chosen[i]),
            "global_syn": mean(test_evals, "global_bacc", lambda i: syn),
            "global_blend": mean(test_evals, "global_bacc", lambda i: chosen[i]),
            "val_client": 100 * float(np.mean([e.val_acc[chosen[i]] for i, e in enumerate(val_evals)])),
            "val_cv": 100 * val_cv,
            "lambda": float(np.mean([lambdas[i] for i in chosen]))}


def spread_ratio(module, artifact, federation, seed: int) -> float:
    """Synthetic / real within-class std (module docstring); NaN without a generator."""
    if not hasattr(module, "synthetic_set"):
        return math.nan
    x = np.concatenate([c.x_train for c in federation.clients])
    y = np.concatenate([c.y_train for c in federation.clients])
    drawn = module.synthetic_set(artifact, len(y), torch_generator(seed, "benchmark-spread"))
    if drawn is None:  # a method without a generator (dp-fedavg)
        return math.nan
    synthetic, labels = drawn
    ratios = [synthetic[labels == c].std(axis=0).mean() / x[y == c].std(axis=0).mean()
              for c in np.unique(y) if (labels == c).sum() > 1 and (y == c).sum() > 1]
    return float(np.mean(ratios)) if ratios else math.nan


def run_one(method: str, epsilon: float, seed: int, rounds: int, dataset: str,
            evaluations: tuple[str, ...] = (REFERENCE_EVALUATION,), global_all: bool = True,
            rules: tuple[str, ...] = (REFERENCE_RULE,), probe_folds: int = LinearProbeConfig().folds,
            partition: str = "dirichlet") -> list[dict]:
    """One row per downstream protocol of ``evaluations`` and λ rule of ``rules``; a method is trained once.  The
    first protocol is scored on the global test set too; the others only with
    ``global_all`` (a second pass of every probe: without it their ``global_*`` are NaN)."""
    started = time.perf_counter()
    configs = [evaluation_config(spec, probe_folds) for spec in evaluations]
    command = command_for("dp-stats" if method in BOUND_NAMES else method, epsilon, seed, rounds, dataset, configs[0],
                          partition)
    prepared = prepare(command)
    federation = prepared.federation
    val_set, test_set = validation_set(federation), global_test_set(federation)
    spread, epsilon_max = math.nan, 0.0
    if method in BOUND_NAMES:
        def evaluate(config, scored):
            return BOUNDS[method](federation, config, seed, scored)
        first = (evaluate(configs[0], test_set), evaluate(configs[0], val_set))
    else:
        _, pool, result = train_run(command, prepared, test_set)
        first = (result.evaluations, pool.evaluate(pool.client_ids, result.artifact, val_set))

        def evaluate(config, scored):  # generators only: the same artifact under another protocol
            return [evaluate_generator(c, result.artifact, config, seed, scored) for c in federation.clients]
        spread = spread_ratio(prepared.module, result.artifact, federation, seed)
        epsilon_max = max(r.epsilon_total for r in result.privacy_records)
    per_evaluation = [(*first, time.perf_counter())]
    for config in configs[1:]:
        if method == "local-only":  # no synthetic set: the same probe under every protocol
            per_evaluation.append(per_evaluation[0])
            continue
        val_evals = evaluate(config, val_set)
        per_evaluation.append((evaluate(config, test_set) if global_all else None, val_evals, time.perf_counter()))
    rows, previous = [], started
    for spec, (test_evals, val_evals, finished) in zip(evaluations, per_evaluation):
        for rule in rules:
            row = scores(test_evals or val_evals, val_evals, rule, seed)
            if test_evals is None:  # scored on the validation set in place of the global test set
                row.update(global_syn=math.nan, global_blend=math.nan)
            rows.append({"dataset": dataset, "partition": partition_name(partition), "method": method, "epsilon": epsilon, "seed": seed, "rounds": rounds,
                         "evaluation": spec, "rule": rule, "probe_folds": probe_folds, **row, "spread": spread, "epsilon_spent": epsilon_max,
                         "seconds": finished - previous})
        previous = finished
    return rows


def print_tables(frame: pd.DataFrame) -> None:
    for dataset, rows in frame.groupby("dataset"):
        columns = [c for c in ("val_client", "val_cv", "val_syn", "val_blend", "test_syn", "test_blend", "global_syn",
                               "global_blend", "spread") if c in rows]  # older files lack val_client
        table = rows.groupby(["partition", "probe_folds", "evaluation", "rule", "method", "epsilon"]).agg(
            seeds=("seed", "count"), **{c: (c, "mean") for c in columns})
        print(f"\n## {dataset}: BACC % (mean over clients; mean over seeds)\n")
        table = table.reset_index()
        print("| " + " | ".join(table.columns) + " |")
        print("|" + "---|" * len(table.columns))
        for _, row in table.iterrows():
            print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) and k != "epsilon" else f"{v:g}"
                                    if isinstance(v, float) else str(v) for k, v in row.items()) + " |")


def read_results(path: Path) -> pd.DataFrame:
    """The rows of a results file (empty when it does not exist), with the columns added
    since older files were written filled in as those files' runs had them."""
    frame = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    if not frame.empty and "evaluation" not in frame:  # written before --evaluations
        frame["evaluation"] = REFERENCE_EVALUATION
    if not frame.empty and "rule" not in frame:  # written before --rules
        frame["rule"] = REFERENCE_RULE
    if not frame.empty and "probe_folds" not in frame:  # written before --probe-folds: not recorded
        frame["probe_folds"] = -1
    if not frame.empty and "partition" not in frame:  # written before --partition: the default
        frame.insert(1, "partition", partition_name("dirichlet"))
    return frame


def run_key(key: tuple[str, str, str, float, int, int, int, tuple[str, ...], bool, tuple[str, ...]]) -> list[dict]:
    """:func:`run_one` of ``(dataset, partition, method, epsilon, seed, rounds, probe_folds, evaluations,
    global_all, rules)``."""
    dataset, partition, method, epsilon, seed, rounds, probe_folds, evaluations, global_all, rules = key
    return run_one(method, epsilon, seed, rounds, dataset, evaluations, global_all, rules, probe_folds, partition)


def jobs_option(text: str) -> int | str:
    return "auto" if text == "auto" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, math.inf])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+",
                        default=["local-only", "pooled-real", "dp-stats", "dp-fedavg", "fedhypevae"])
    parser.add_argument("--rounds", type=int, default=TrainingConfig().rounds)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--partition", choices=["dirichlet", "iid"], default="dirichlet",
                        help="--data.partition (dirichlet: α = the --data.alpha default; column partition)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--jobs", type=jobs_option, default="auto",
                        help="runs in parallel worker processes, each with CPUs ÷ jobs torch threads (auto: one "
                             "per CPU; 1: one after the other in this process); rows are written by this process")
    parser.add_argument("--evaluations", nargs="+", default=[REFERENCE_EVALUATION],
                        help="downstream protocols MIX:LABELS:SIZE (prediction|data : client|global|balanced : "
                             "<k>x|<count>); each run is trained once and evaluated under each")
    parser.add_argument("--first-global-only", action="store_true",
                        help="score only the first of --evaluations on the global test set (the others' "
                             "global columns are NaN): one pass of their probes instead of two")
    parser.add_argument("--rules", nargs="+", default=[REFERENCE_RULE],
                        help="λ choices RULE:METRIC:GUARD (global|per-client : accuracy|balanced : m >= 0); "
                             "each applied to every evaluation (validation only), at no extra cost")
    parser.add_argument("--probe-folds", type=int, default=LinearProbeConfig().folds,
                        help="--evaluation.probe.folds of every evaluation (0: C chosen on validation alone)")
    parser.add_argument("--print-only", nargs="*", type=Path, metavar="FILE", default=None,
                        help="print the tables of --out merged with these result files (e.g. a dataset's grid "
                             "and its one-seed runs: one table per dataset) and exit")
    args = parser.parse_args()
    frame = read_results(args.out)
    if args.print_only is not None:
        for path in args.print_only:
            if not path.exists():
                parser.error(f"--print-only: {path} does not exist (give Parquet files this benchmark wrote)")
        # a run stored in several files (a grid's seed 0 repeated in a later file) counts once: the first
        frame = pd.concat([frame, *(read_results(path) for path in args.print_only)], ignore_index=True)
        frame = frame.drop_duplicates(subset=[k for k in KEY if k in frame], keep="first")
    else:
        check_jobs(args.jobs, "--jobs")
        for spec in args.evaluations:
            evaluation_config(spec, args.probe_folds)
        for spec in args.rules:
            lambda_rule(spec)
        done = set() if frame.empty else set(frame[KEY].itertuples(index=False, name=None))
        # bounds do not depend on ε: one run, stored at ε = inf
        todo = []
        for seed in args.seeds:
            for method in args.methods:
                for epsilon in ([math.inf] if method in BOUND_NAMES else args.epsilons):
                    run = (args.dataset, partition_name(args.partition), method, epsilon, seed, args.rounds)
                    missing = tuple(spec for spec in args.evaluations
                                    if any(run + (spec, rule, args.probe_folds) not in done for rule in args.rules))
                    if missing:
                        todo.append((args.dataset, args.partition, *run[2:], args.probe_folds, missing,
                                     not args.first_global_only, tuple(args.rules)))
        jobs = resolve_jobs(args.jobs, 0, len(todo))
        finished = ((key, run_key(key)) for key in todo) if jobs == 1 else \
            run_in_workers(run_key, todo, jobs, worker_threads(jobs, 0))
        for _, rows in finished:
            rows = [row for row in rows if tuple(row[k] for k in KEY) not in done]  # a rule added to a run
            for row in rows:
                print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(args.out, index=False)
    if not frame.empty:
        print_tables(frame)


if __name__ == "__main__":
    main()
