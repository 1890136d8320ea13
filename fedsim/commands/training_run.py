"""The body of ``train``: validate, build, run, write the run directory, print results.

:func:`simulate` builds the server and the client pool of the command's backend and
runs :func:`fedsim.simulation.run_federation` with the caller's callbacks, plus a
:class:`~fedsim.callbacks.CheckpointCallback` when the run has a directory and
``--checkpoint-every K``; with ``--resume`` it first loads the latest checkpoint
(:func:`fedsim.simulation.resume_run`).  :func:`run_training` adds the progress bar
and the ``--resume`` configuration merge (:mod:`fedsim.commands.resume`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Sequence

import torch

from fedsim.algorithms.base import Server
from fedsim.algorithms.registry import RunSettings, method
from fedsim.algorithms.spec import FederationSpec
from fedsim.callbacks import CheckpointCallback, ProgressBar, RunCallback
from fedsim.checkpoint import load_checkpoint
from fedsim.commands.resume import resume_command
from fedsim.data.federation import Federation, load_federation
from fedsim.evaluation.blend import chosen_results, summarize
from fedsim.evaluation.global_test import global_test_set
from fedsim.outputs import config_dict, write_frame, write_json, write_synthetic
from fedsim.privacy.secure_noise import REPRODUCIBLE_NOISE_NOTE
from fedsim.privacy.aggregate import resolved_min_cohort
from fedsim.privacy.coverage import coverage, run_notes
from fedsim.privacy.journal import PrivacyJournal
from fedsim.privacy.ledger import format_ledger, ledger_to_json
from fedsim.seeding import torch_generator
from fedsim.simulation import ClientPool, LocalClientPool, RunResult, resume_run, run_federation


def validate(command) -> None:
    """Every option of ``command`` checked, once, before any work starts (a ``UserError``
    naming the first invalid option, as on the CLI)."""
    command.validate()


@dataclass(frozen=True)
class Prepared:
    """A validated command's data and settings, before any training."""

    federation: Federation
    spec: FederationSpec
    settings: RunSettings
    module: ModuleType


def run_settings(command) -> RunSettings:
    """The run's settings: everything the clients and the server need apart from the data."""
    return RunSettings(command.algorithm, command.method_config(), command.privacy,
                       command.training, command.evaluation, command.seed, command.device)


def prepare(command) -> Prepared:
    """Validate ``command``, set the thread count, load the federation, resolve the algorithm."""
    validate(command)
    if command.threads > 0:
        torch.set_num_threads(command.threads)
    federation = load_federation(command.data, command.seed)
    spec = FederationSpec(len(federation.clients), federation.num_classes, federation.dim,
                          tuple(federation.class_names))
    resolved_min_cohort(command.privacy, spec.num_clients)  # a UserError when it exceeds the clients
    return Prepared(federation, spec, run_settings(command), method(command.algorithm).implementation())


@contextlib.contextmanager
def backend_started(command) -> Iterator[Any]:
    """With ``--backend ray``: Ray and the run's actors, started now (after validation,
    before :func:`prepare` loads the data) so that the actors start up while the data
    loads (:func:`actors.driver.ray_started`); pass it to :func:`simulate`.  None for
    the local backend."""
    if command.backend != "ray":
        yield None
        return
    validate(command)
    from actors.driver import ray_started  # the Ray runtime lives outside fedsim, imported only when used

    with ray_started(command.ray, run_settings(command), command.data.num_clients) as started:
        yield started


def simulate(command, prepared: Prepared, callbacks: Sequence[RunCallback] = (),
             run_dir: Path | None = None, started: Any = None) -> RunResult:
    """Build the server and the client pool of ``command``'s backend and run every round,
    the release, the finalisation and the per-client evaluation (module docstring).
    With ``run_dir``, checkpoints go there every ``--checkpoint-every`` rounds, and
    ``--resume`` starts from its latest one.  The global test set (``--evaluation.test
    global|both``) is built here, simulator-side, and reaches only the final evaluation.
    ``started``: :func:`backend_started`'s Ray and actors for ``--backend ray``."""
    server: Server
    pool: ClientPool
    global_test = None if command.evaluation.test == "client" else global_test_set(prepared.federation)
    if command.backend == "ray":
        from actors.driver import ray_federation  # the Ray runtime lives outside fedsim, imported only when used

        with ray_federation(prepared, command.ray, started=started) as (server, pool):
            return run_rounds(command, prepared.settings, server, pool, callbacks, run_dir, global_test)
    server = prepared.module.make_server(prepared.spec, prepared.settings)
    pool = LocalClientPool(prepared.federation, prepared.spec, prepared.settings)
    return run_rounds(command, prepared.settings, server, pool, callbacks, run_dir, global_test)


def run_rounds(command, settings: RunSettings, server, pool, callbacks: Sequence[RunCallback] = (),
               run_dir: Path | None = None, global_test=None) -> RunResult:
    """:func:`~fedsim.simulation.run_federation` of ``server`` and ``pool`` with
    ``callbacks``, resumed from ``run_dir`` (``--resume``) and checkpointed into it
    (``--checkpoint-every``) when ``run_dir`` is given."""
    start, result = 0, None
    callbacks = list(callbacks)
    if run_dir is not None:
        if command.resume is not None:
            start, result = resume_run(run_dir, server, pool, settings.seed)
        if command.checkpoint_every > 0 or command.resume is not None:
            # last: its entry is written after every other callback's on_round_start,
            # just before the clients run (a callback that stops the run there started nothing)
            callbacks.append(PrivacyJournal(run_dir, resumed=command.resume is not None))
        if command.checkpoint_every > 0:
            callbacks.append(CheckpointCallback(run_dir, command.checkpoint_every, settings.training.rounds,
                                                server, pool, command))
    return run_federation(server, pool, settings, callbacks, start_round=start, result=result,
                          global_test=global_test)


@dataclass(frozen=True)
class ConfigurationResult:
    """One configuration, run: its data, the raw run result, the per-client rows at the
    chosen λ (:func:`~fedsim.evaluation.blend.chosen_results`) and the privacy ledger."""

    prepared: Prepared
    result: RunResult
    rows: list[dict]
    ledger: dict


def run_configuration(command, callbacks: Sequence[RunCallback] = ()) -> ConfigurationResult:
    """Run ``command`` without writing anything (the ``table`` command's unit of work)."""
    with backend_started(command) as started:
        prepared = prepare(command)
        result = simulate(command, prepared, callbacks, started=started)
    rows = chosen_results(result.evaluations, command.evaluation.selection, command.evaluation.lambda_guard,
                          command.evaluation.lambda_metric)
    return ConfigurationResult(prepared, result, rows,
                               ledger_to_json(result.privacy_records))


def run_training(command, callbacks: Sequence[RunCallback] = ()) -> dict:
    """Run ``command`` (a :class:`~fedsim.commands.train.TrainCommand`); return the summary.

    ``callbacks`` (:mod:`fedsim.callbacks`, for example a reporter to Ray Tune) are
    called during the run, after the progress bar.  With ``--resume`` the run continues
    from its directory's latest checkpoint with its saved configuration."""
    if command.resume is not None:
        checkpoint = load_checkpoint(command.resume)
        command = resume_command(command, checkpoint.command, command.resume)
        print(f"fedsim: resuming {command.resume} after round {checkpoint.rounds_done}", file=sys.stderr)
    with backend_started(command) as started:
        prepared = prepare(command)
        federation, spec, module = prepared.federation, prepared.spec, prepared.module
        out = command.run_directory()
        out.mkdir(parents=True, exist_ok=True)
        write_json(config_dict(command), out / "config.json")

        print(f"fedsim: {command.algorithm} on {federation.dataset_name} — {spec.num_clients} clients, "
              f"{command.data.partition} partition, ε={command.privacy.epsilon}, δ={command.privacy.delta}, "
              f"{command.training.rounds} rounds → {out}", file=sys.stderr)
        if command.privacy.private and command.privacy.reproducible_noise:
            print(f"fedsim: WARNING {REPRODUCIBLE_NOISE_NOTE}", file=sys.stderr)
        progress = [ProgressBar(command.training.rounds)] if command.progress else []
        result = simulate(command, prepared, [*progress, *callbacks], run_dir=out, started=started)
    return write_outputs(command, federation, spec, module, result, out)


def synthetic_set_size(command, federation, artifact) -> int:
    """The released synthetic set's size: ``--training.synthetic-size``, else the
    federation's total train size; with DP the total is hidden, so the released DP count
    of it (``artifact.released_records``: the sum of the clients' noisy class counts).
    0 for a method that releases no synthetic data (its registry record's ``synthesis``)."""
    if not method(command.algorithm).synthesis:
        return 0
    if command.training.synthetic_size:
        return command.training.synthetic_size
    if not command.privacy.private:
        return sum(c.n_train for c in federation.clients)
    released = getattr(artifact, "released_records", None)
    if released is None:
        raise ValueError(f"{command.algorithm}'s artifact has no DP record count for the synthetic set's size")
    return max(1, int(round(released)))


def run_ledger(command, federation, result: RunResult, releases_synthetic: bool) -> dict:
    """``privacy.json``: the clients' ledger plus the run's notes (options that read data
    without noise) and the coverage of every output (:mod:`fedsim.privacy.coverage`)."""
    ledger = ledger_to_json(result.privacy_records)
    truncated = sum(c.n_train > command.privacy.max_records for c in federation.clients)
    ledger["note"] = " ".join(n for n in [ledger["note"], *run_notes(command, truncated)] if n)
    ledger["coverage"] = coverage(command, releases_synthetic)
    return ledger


def write_outputs(command, federation, spec, module, result: RunResult, out) -> dict:
    """Write metrics, ledger, synthetic data, per-client results and the summary."""
    write_frame(result.round_metrics, out / "metrics.parquet")
    rows = chosen_results(result.evaluations, command.evaluation.selection, command.evaluation.lambda_guard,
                          command.evaluation.lambda_metric)
    write_frame(rows, out / "clients.parquet")

    synthetic = module.synthetic_set(result.artifact, synthetic_set_size(command, federation, result.artifact),
                                     torch_generator(command.seed, "released-synthetic"))
    ledger = run_ledger(command, federation, result, synthetic is not None)
    write_json(ledger, out / "privacy.json")
    if synthetic is not None:
        x, y = synthetic
        write_synthetic(x, y, out / "synthetic.parquet",
                        {"algorithm": command.algorithm, "class_names": spec.class_names or None,
                         "epsilon_max": ledger["epsilon_max"], "note": ledger["note"],
                         "noise": ledger["noise"], "neighbouring": ledger["neighbouring"],
                         "coverage": ledger["coverage"]})

    summary: dict[str, Any] = dict(summarize(rows))
    summary.update({
        "algorithm": command.algorithm,
        "epsilon_max": ledger["epsilon_max"],
        "delta": command.privacy.delta,
        # what the method really ran ("none" for a method without DP, e.g. fedavg at --privacy.epsilon 1)
        "privacy_mode": "/".join(sorted({record.privacy_mode for record in result.privacy_records})),
        "privacy_note": ledger["note"],
        "noise": ledger["noise"],
        "neighbouring": ledger["neighbouring"],
        "coverage": ledger["coverage"],
        "selection": command.evaluation.selection,
        "lambda_metric": command.evaluation.lambda_metric,
        "lambda": rows[0]["lambda"] if command.evaluation.selection == "global" else None,
        "rounds": command.training.rounds,
        "seconds": round(result.seconds, 2),
    })
    write_json(summary, out / "summary.json")

    print(format_ledger(result.privacy_records))
    for prefix, where in (("", "test split per client"), ("global_", "class-balanced global test set")):
        if f"{prefix}acc_mean" not in summary:
            continue
        print(f"\ndownstream ({command.evaluation.selection} λ on validation "
              f"{'balanced accuracy' if command.evaluation.lambda_metric == 'balanced' else 'accuracy'}; {where}):")
        for name, title in (("acc", "accuracy         "), ("bacc", "balanced accuracy"), ("f1", "macro-F1         ")):
            print(f"  {title} {100 * summary[prefix + name + '_mean']:.2f} ± "
                  f"{100 * summary[prefix + name + '_std']:.2f} %")
    if ledger["note"]:
        print("NOTE: " + ledger["note"])
    print(f"run directory: {os.fspath(out)}  ({result.seconds:.1f} s)")
    return summary
