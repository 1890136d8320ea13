"""The body of ``table``: plan the runs, run the unfinished ones, write the reports.

Every run is one :class:`~fedsim.commands.train.TrainCommand`, executed by
:func:`fedsim.commands.training_run.run_configuration` (the ``train`` machinery,
same backends).  Its record — per-client rows at the chosen λ, the ε its clients
spent, the fidelity of its synthetic set — is written atomically to
``<out>/results/<row>__<configuration>__seed<k>.json`` together with a fingerprint
of its full configuration.  Rerunning the command reuses every record whose
fingerprint matches, so an interrupted table resumes where it stopped; a record of a
*different* configuration in the same directory is refused rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from tqdm import tqdm

from fedsim.algorithms.registry import method
from fedsim.commands.resume import results_config
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import run_configuration
from fedsim.data.federation import PartitionScheme
from fedsim.errors import UserError
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


def table_rows(table) -> list[Row]:
    rows = [Row(m, method(m, "--methods").label, m) for m in table.methods]
    return rows + list(ABLATIONS) if table.ablations else rows


def configurations(table) -> list[Configuration]:
    found = [Configuration("iid", "IID", "iid")] if table.iid else []
    return found + [Configuration(f"dirichlet-{a:g}", f"α = {a:g}", "dirichlet", float(a)) for a in table.alphas]


def train_command(table, row: Row, configuration: Configuration, seed: int) -> TrainCommand:
    """The full configuration of one run: ``table.run`` with the row's algorithm (and its
    ablation changes), the configuration's partition, the seed and the table's rounds."""
    base: TrainCommand = table.run
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
            for row in table_rows(table)]


def fingerprint(command: TrainCommand) -> str:
    """SHA-256 of the run's configuration, without options that do not change results."""
    config = results_config(config_dict(command))
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def load_finished(path: Path, planned: PlannedRun) -> dict | None:
    """The saved record of ``planned``, or None; refuses a record of another configuration."""
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("fingerprint") != fingerprint(planned.command):
        raise UserError(f"{path} holds a result of a different configuration than this command's "
                        f"{planned.label}; use another --out or delete that file.")
    return record


def run_one(planned: PlannedRun) -> dict:
    """Run one configuration and build its record (module docstring)."""
    started = time.perf_counter()
    outcome = run_configuration(planned.command)
    real = held_out_real(outcome.prepared.federation)
    synthetic = outcome.prepared.module.synthetic_set(outcome.result.artifact, len(real),
                                                      torch_generator(planned.seed, "fidelity-synthetic"))
    epsilons = {r.client_id: float(r.epsilon_total) for r in outcome.result.privacy_records}
    clients = [dict(row, epsilon=epsilons[row["client"]]) for row in outcome.rows]
    modes = {r.privacy_mode for r in outcome.result.privacy_records}
    return {
        "fingerprint": fingerprint(planned.command),
        "row": planned.row.key, "method": planned.row.name, "algorithm": planned.row.algorithm,
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
    for planned in todo:
        bar.set_postfix_str(planned.label, refresh=True)
        record = run_one(planned)
        write_json_atomic(record, results / planned.filename)
        records[planned.filename] = record
        bar.update(1)
    bar.close()
    finished = cast("list[dict]", [records[run.filename] for run in runs])  # every run has its record now
    summary = write_reports(finished, out, _settings(table))
    print((out / "table.md").read_text(encoding="utf-8").split("\n## ")[0])
    print(f"wrote {out / 'table.md'}, table.csv, summary.csv, clients.parquet, table.png", file=sys.stderr)
    return {"ran": len(todo), "reused": len(runs) - len(todo), "summary": summary, "out": out}


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
                       f"{run.evaluation.synthetic_labels}; probe: {run.evaluation.probe.preset}",
        "quick preset": str(table.quick),
    }
