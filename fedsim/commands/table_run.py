"""The body of ``table``: plan the runs, run the unfinished ones, write the reports.

Every run is one :class:`~fedsim.commands.train.TrainCommand`, executed by
:func:`fedsim.commands.training_run.run_configuration` (the ``train`` machinery,
same backends).  Its record — per-client rows at the chosen λ, the ε its clients
spent, the fidelity of its synthetic set — is written atomically to
``<out>/results/<row>__<configuration>__seed<k>.json`` together with a fingerprint
of its full configuration.  Rerunning the command reuses every record whose
fingerprint matches, so an interrupted table resumes where it stopped; a record of a
*different* configuration in the same directory is refused rather than mixed in.

The bounds (:mod:`fedsim.evaluation.bounds`: local-only, pooled-real, centralised) do
not depend on the method: each is computed once per configuration × seed from the
federation, and saved and reused like a run (``bound-<name>__<configuration>__seed<k>.json``,
fingerprinted by the data, evaluation and seed options only).  Their records have
``kind = "bound"`` and the reports show them apart, as bounds, not methods.

With ``--jobs N`` (N > 1; ``auto`` where the CPUs allow) the unfinished runs and bounds
run in N spawned worker processes (:mod:`fedsim.commands.worker_pool`), each with its
share of the CPUs as torch threads; the records come back to this process, which
writes each one as it arrives, so resuming works as above and a kill loses only the
runs in flight.  A run's result does not depend on the process it ran in (the data
come from the seeds; a worker generates a built-in dataset once,
:func:`fedsim.data.builtin.generated_dataset`), so the table is the one ``--jobs 1``
writes when ``--run.threads`` is fixed.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, cast

from tqdm import tqdm

from fedsim.algorithms.registry import method
from fedsim.commands.resume import results_config, same_results_config
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import run_configuration
from fedsim.commands.worker_pool import resolve_jobs, run_in_workers, worker_threads
from fedsim.data.federation import PartitionScheme, load_federation
from fedsim.errors import UserError
from fedsim.evaluation import PROTOCOL_REVISION
from fedsim.evaluation.bounds import bound_results
from fedsim.evaluation.fidelity import fidelity, held_out_real
from fedsim.evaluation.report import write_reports
from fedsim.io_utils import write_json_atomic
from fedsim.outputs import config_dict
from fedsim.seeding import torch_generator


@dataclass(frozen=True)
class Row:
    """A table row: a method, or a variant of one (an ablation)."""

    key: str
    name: str
    algorithm: str
    method_changes: tuple[tuple[str, Any], ...] = ()
    privacy_changes: tuple[tuple[str, Any], ...] = ()
    kind: str = "method"
    """``method`` or ``bound`` (a reference row, :mod:`fedsim.evaluation.bounds`; ``algorithm`` is its name)."""


ABLATIONS = (
    Row("fedhypevae-no-hypernetwork", "FedHypeVAE w/o hypernetwork", "fedhypevae", (("hypernetwork", False),)),
    Row("fedhypevae-no-mmd", "FedHypeVAE w/o MMD", "fedhypevae", (("lambda_mmd", 0.0),)),
    Row("fedhypevae-no-metacode", "FedHypeVAE w/o meta-code", "fedhypevae", (("meta_fit", False),)),
    Row("fedhypevae-paper-mode", "FedHypeVAE (paper privacy mode)", "fedhypevae", (),
        (("privacy_mode", "paper"),)),
)


@dataclass(frozen=True)
class Configuration:
    """A column group: a partition of the data among the clients."""

    key: str
    label: str
    partition: PartitionScheme
    alpha: float | None = None


@dataclass(frozen=True)
class PlannedRun:
    row: Row
    configuration: Configuration
    seed: int
    command: TrainCommand

    @property
    def filename(self) -> str:
        return f"{self.row.key}__{self.configuration.key}__seed{self.seed}.json"

    @property
    def label(self) -> str:
        return f"{self.row.name} · {self.configuration.label} · seed {self.seed}"


def method_label(table, name: str) -> str:
    """The method's label, with " (no DP)" when its runs train without DP (ε = ∞)."""
    record = method(name, "--methods")
    private = table.run.privacy.private and record.is_private(getattr(table.run, record.field))
    return record.label if private else f"{record.label} (no DP)"


def table_rows(table) -> list[Row]:
    rows = [Row(m, method_label(table, m), m) for m in table.methods]
    return rows + list(ABLATIONS) if table.ablations else rows


def bound_rows(table) -> list[Row]:
    """The table's bounds (``--bounds``), as rows of kind ``bound``."""
    return [Row(f"bound-{name}", f"{name} (bound)", name, kind="bound") for name in table.bounds]


def configurations(table) -> list[Configuration]:
    found = [Configuration("iid", "IID", "iid")] if table.iid else []
    return found + [Configuration(f"dirichlet-{a:g}", f"α = {a:g}", "dirichlet", float(a)) for a in table.alphas]


def train_command(table, row: Row, configuration: Configuration, seed: int) -> TrainCommand:
    """The full configuration of one run: ``table.run`` with the row's algorithm (and its
    ablation changes), the configuration's partition, the seed and the table's rounds
    (a bound's: ``table.run`` with the partition and the seed; only its data and
    evaluation options matter)."""
    base: TrainCommand = table.run
    if row.kind == "bound":
        data = replace(base.data, partition=configuration.partition,
                       alpha=configuration.alpha if configuration.alpha is not None else base.data.alpha)
        return replace(base, seed=seed, data=data, out=None, progress=False)
    field = method(row.algorithm).field
    changes = {field: replace(getattr(base, field), **dict(row.method_changes))}
    privacy = replace(base.privacy, **dict(row.privacy_changes))
    data = replace(base.data, partition=configuration.partition,
                   alpha=configuration.alpha if configuration.alpha is not None else base.data.alpha)
    training = replace(base.training, rounds=table.effective_rounds())
    return replace(base, algorithm=row.algorithm, seed=seed, data=data, privacy=privacy, training=training,
                   out=None, progress=False, **changes)


def plan(table) -> list[PlannedRun]:
    """Seeds outermost, then configurations, then rows: a first full table early, and a
    progress rate that averages over fast and slow methods."""
    return [PlannedRun(row, configuration, seed, train_command(table, row, configuration, seed))
            for seed in table.effective_seeds() for configuration in configurations(table)
            for row in [*table_rows(table), *bound_rows(table)]]


BOUND_OPTIONS = ("data", "evaluation", "seed")
"""The options a bound's result depends on (its fingerprint)."""


def fingerprint(command: TrainCommand, row: Row | None = None) -> str:
    """SHA-256 of the run's configuration, without options that do not change results
    (a bound's: its name and the :data:`BOUND_OPTIONS`)."""
    config = results_config(config_dict(command))
    if row is not None and row.kind == "bound":
        config = {"bound": row.algorithm, **{key: config[key] for key in BOUND_OPTIONS}}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def load_finished(path: Path, planned: PlannedRun) -> dict | None:
    """The saved record of ``planned``, or None; refuses a record of another configuration."""
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    revision = record.get("protocol_revision", 1)
    if revision != PROTOCOL_REVISION:
        raise UserError(f"{path} was evaluated under fedsim's evaluation protocol revision {revision}, "
                        f"this fedsim's is {PROTOCOL_REVISION} (fedsim.evaluation.PROTOCOL_REVISION); "
                        f"use another --out or delete that file.")
    if record.get("fingerprint") != fingerprint(planned.command, planned.row) and not _saved_by_older_fedsim(record, planned):
        raise UserError(f"{path} holds a result of a different configuration than this command's "
                        f"{planned.label}; use another --out or delete that file.")
    return record


def _saved_by_older_fedsim(record: dict, planned: PlannedRun) -> bool:
    """A record whose fingerprint differs only because fedsim gained options since it was
    written (each at its default now): still this run's result
    (:func:`fedsim.commands.resume.same_results_config`), so that a table left unfinished
    resumes after an upgrade that adds options."""
    if "config" not in record:
        return False
    current, default = config_dict(planned.command), config_dict(TrainCommand())
    if planned.row.kind == "bound":
        current = {key: current[key] for key in BOUND_OPTIONS}
        default = {key: default[key] for key in BOUND_OPTIONS}
    return same_results_config(record["config"], current, default)


def run_one(planned: PlannedRun) -> dict:
    """Run one configuration (or compute one bound) and build its record (module docstring)."""
    if planned.row.kind == "bound":
        return bound_record(planned)
    started = time.perf_counter()
    outcome = run_configuration(planned.command)
    real = held_out_real(outcome.prepared.federation)
    synthetic = outcome.prepared.module.synthetic_set(outcome.result.artifact, len(real),
                                                      torch_generator(planned.seed, "fidelity-synthetic"))
    epsilons = {r.client_id: float(r.epsilon_total) for r in outcome.result.privacy_records}
    clients = [dict(row, epsilon=epsilons[row["client"]]) for row in outcome.rows]
    modes = {r.privacy_mode for r in outcome.result.privacy_records}
    return {
        "fingerprint": fingerprint(planned.command), "protocol_revision": PROTOCOL_REVISION,
        "row": planned.row.key, "method": planned.row.name, "algorithm": planned.row.algorithm, "kind": "method",
        "configuration": planned.configuration.key, "configuration_label": planned.configuration.label,
        "seed": planned.seed,
        "clients": clients,
        "epsilon_max": max(epsilons.values()),
        "target_epsilon": planned.command.privacy.epsilon,
        "privacy_mode": "/".join(sorted(modes)),
        "note": outcome.ledger["note"],
        "noise": outcome.ledger["noise"],
        "fidelity": fidelity(real, None if synthetic is None else synthetic[0], seed=planned.seed),
        "seconds": time.perf_counter() - started,
        "config": config_dict(planned.command),
    }


def bound_record(planned: PlannedRun) -> dict:
    """The record of a bound: its per-client rows at the λ chosen on validation, on the
    federation of ``planned`` (the global test set as for the methods); no ε (no
    mechanism: a bound shares real data), no synthetic set."""
    started = time.perf_counter()
    command = planned.command
    federation = load_federation(command.data, command.seed)
    rows = bound_results(planned.row.algorithm, federation, command.evaluation, command.seed)
    return {
        "fingerprint": fingerprint(command, planned.row), "protocol_revision": PROTOCOL_REVISION,
        "row": planned.row.key, "method": planned.row.name, "algorithm": planned.row.algorithm, "kind": "bound",
        "configuration": planned.configuration.key, "configuration_label": planned.configuration.label,
        "seed": planned.seed,
        "clients": [dict(row, epsilon=math.inf) for row in rows],
        "epsilon_max": math.inf, "target_epsilon": math.inf,
        "privacy_mode": "bound", "note": "", "noise": "",
        "fidelity": fidelity(held_out_real(federation), None, seed=planned.seed),
        "seconds": time.perf_counter() - started,
        "config": {key: config_dict(command)[key] for key in BOUND_OPTIONS},
    }


def run_table(table) -> dict:
    """Run (or reuse) every planned run, write the reports; return counts and the summary."""
    table.validate()
    runs = plan(table)
    out = table.table_directory()
    results = out / "results"
    records = {run.filename: load_finished(results / run.filename, run) for run in runs}
    todo = [run for run in runs if records[run.filename] is None]
    print(f"fedsim table: {len(runs)} runs ({len(runs) - len(todo)} already finished) → {out}", file=sys.stderr)
    write_json_atomic(config_dict(table), out / "table_config.json")
    bar = tqdm(total=len(todo), desc="runs", unit="run", file=sys.stderr, disable=not table.progress)
    for planned, record in finished_runs(table, todo, bar):
        write_json_atomic(record, results / planned.filename)
        records[planned.filename] = record
        bar.update(1)
    bar.close()
    finished = cast("list[dict]", [records[run.filename] for run in runs])  # every run has its record now
    summary = write_reports(finished, out, _settings(table))
    print((out / "table.md").read_text(encoding="utf-8").split("\n## ")[0])
    print(f"wrote {out / 'table.md'}, table.csv, summary.csv, clients.parquet, table.png", file=sys.stderr)
    return {"ran": len(todo), "reused": len(runs) - len(todo), "summary": summary, "out": out}


def finished_runs(table, todo: list[PlannedRun], bar) -> Iterator[tuple[PlannedRun, dict]]:
    """``(run, record)`` of every run in ``todo`` as it finishes: one after the other in this
    process with ``--jobs 1`` (or one run to do), else in ``--jobs`` worker processes
    (:func:`fedsim.commands.worker_pool.run_in_workers`; their records come back here, to
    be written by this process only)."""
    threads = table.run.threads
    jobs = 1 if table.jobs == "auto" and table.run.backend == "ray" else resolve_jobs(table.jobs, threads, len(todo))
    if jobs == 1:
        for planned in todo:
            bar.set_postfix_str(planned.label, refresh=True)
            yield planned, run_one(planned)
        return
    print(f"fedsim table: {jobs} runs at a time, {worker_threads(jobs, threads)} torch thread(s) each",
          file=sys.stderr)
    for planned, record in run_in_workers(run_one, todo, jobs, worker_threads(jobs, threads)):
        bar.set_postfix_str(f"done: {planned.label}", refresh=False)
        yield planned, record


def _settings(table) -> dict[str, str]:
    run = table.run
    epsilon = "∞" if math.isinf(run.privacy.epsilon) else f"{run.privacy.epsilon:g}"
    return {
        "dataset": run.data.dataset,
        "clients": str(run.data.num_clients),
        "rounds × local epochs": f"{table.effective_rounds()} × {run.training.local_epochs}",
        "seeds": ", ".join(str(s) for s in table.effective_seeds()),
        "partition seed": str(run.data.partition_seed),
        "target ε, δ, C": f"{epsilon}, {run.privacy.delta:g}, {run.privacy.clip_norm:g} "
                          f"({run.privacy.accountant} accountant)",
        "λ selection": f"{run.evaluation.selection} (validation accuracy); synthetic labels: "
                       f"{run.evaluation.synthetic_labels}; probe: {run.evaluation.probe.preset}"
                       + (f"; synthetic size: {run.evaluation.synthetic_size}"
                          if run.evaluation.synthetic_size != "1x" else "")
                       + (f"; mix: data, λ ∈ {list(run.evaluation.mix_lambdas)}"
                          if run.evaluation.mix == "data" else ""),
        "test sets": f"{run.evaluation.test} (client: each client's own test split; global: the class-balanced set "
                     f"pooled from all clients' test splits, simulator-side)",
        "bounds": ", ".join(table.bounds) or "none",
        "quick preset": str(table.quick),
    }
