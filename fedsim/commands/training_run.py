"""The body of ``train``: validate, build, run, write the run directory, print results."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import ModuleType

import torch

from fedsim.algorithms.registry import RunSettings, algorithm_module
from fedsim.algorithms.spec import FederationSpec
from fedsim.data.federation import Federation, load_federation
from fedsim.evaluation.blend import chosen_results, summarize
from fedsim.outputs import config_dict, write_frame, write_json, write_synthetic
from fedsim.privacy.ledger import format_ledger, ledger_note, ledger_to_json
from fedsim.seeding import torch_generator
from fedsim.simulation import LocalClientPool, RunResult


def validate(command) -> None:
    """Every option checked before any work starts."""
    command.data.validate()
    command.privacy.validate()
    command.training.validate()
    command.evaluation.validate()
    method = command.method_config()
    if hasattr(method, "validate"):
        method.validate()
    if getattr(command, "backend", "local") == "ray":
        command.ray.validate()
    if getattr(command, "checkpoint_every", 0) < 0:
        from fedsim.errors import UserError

        raise UserError(f"--checkpoint-every must be >= 0 (0 = never), got {command.checkpoint_every}.")


@dataclass(frozen=True)
class Prepared:
    """A validated command's data and settings, before any training."""

    federation: Federation
    spec: FederationSpec
    settings: RunSettings
    module: ModuleType


def prepare(command) -> Prepared:
    """Validate ``command``, set the thread count, load the federation, resolve the algorithm."""
    validate(command)
    if command.threads > 0:
        torch.set_num_threads(command.threads)
    federation = load_federation(command.data, command.seed)
    spec = FederationSpec(len(federation.clients), federation.num_classes, federation.dim,
                          tuple(federation.class_names))
    settings = RunSettings(command.algorithm, command.method_config(), command.privacy,
                           command.training, command.evaluation, command.seed)
    return Prepared(federation, spec, settings, algorithm_module(command.algorithm))


def simulate(command, prepared: Prepared, on_round=None, run_dir=None) -> RunResult:
    """Build the server and the client pool of ``command``'s backend and run every round,
    the release, the finalisation and the per-client evaluation.  With ``run_dir``,
    checkpoints go there every ``--checkpoint-every`` rounds, and ``--resume`` starts
    from its latest one (:mod:`fedsim.checkpoint`)."""
    from fedsim.checkpoint import run_with_checkpoints

    def run(server, pool) -> RunResult:
        return run_with_checkpoints(
            server, pool, prepared.settings, run_dir=run_dir,
            every=getattr(command, "checkpoint_every", 0) if run_dir is not None else 0,
            resume=run_dir is not None and getattr(command, "resume", None) is not None,
            command=command, on_round=on_round)

    if getattr(command, "backend", "local") == "ray":
        from actors.driver import ray_federation  # the Ray runtime lives outside fedsim

        with ray_federation(prepared, command.ray) as (server, pool):
            return run(server, pool)
    server = prepared.module.make_server(prepared.spec, prepared.settings)
    pool = LocalClientPool(prepared.federation, prepared.spec, prepared.settings)
    return run(server, pool)


@dataclass(frozen=True)
class ConfigurationResult:
    """One configuration, run: its data, the raw run result, the per-client rows at the
    chosen λ (:func:`~fedsim.evaluation.blend.chosen_results`) and the privacy ledger."""

    prepared: Prepared
    result: RunResult
    rows: list[dict]
    ledger: dict


def run_configuration(command, on_round=None) -> ConfigurationResult:
    """Run ``command`` without writing anything (the ``table`` command's unit of work)."""
    prepared = prepare(command)
    result = simulate(command, prepared, on_round=on_round)
    return ConfigurationResult(prepared, result, chosen_results(result.evaluations, command.evaluation.selection),
                               ledger_to_json(result.privacy_records))


def run_training(command, on_round=None) -> dict:
    """Run ``command`` (a :class:`~fedsim.commands.train.TrainCommand`); return the summary.

    ``on_round(row)`` is called after every round with that round's metrics row (for
    example to report to Ray Tune), besides the progress bar.  With ``--resume`` the
    run continues from its directory's latest checkpoint with its saved configuration."""
    if getattr(command, "resume", None) is not None:
        from fedsim.checkpoint import load_checkpoint, resume_command

        checkpoint = load_checkpoint(command.resume)
        command = resume_command(command, checkpoint.command, command.resume)
        print(f"fedsim: resuming {command.resume} after round {checkpoint.rounds_done}", file=sys.stderr)
    prepared = prepare(command)
    federation, spec, module = prepared.federation, prepared.spec, prepared.module
    out = command.run_directory()
    out.mkdir(parents=True, exist_ok=True)
    write_json(config_dict(command), out / "config.json")

    print(f"fedsim: {command.algorithm} on {federation.dataset_name} — {spec.num_clients} clients, "
          f"{command.data.partition} partition, ε={command.privacy.epsilon}, δ={command.privacy.delta}, "
          f"{command.training.rounds} rounds → {out}", file=sys.stderr)
    progress = _progress(command)

    def report(row: dict) -> None:
        for callback in (progress, on_round):
            if callback is not None:
                callback(row)

    result = simulate(command, prepared, on_round=report, run_dir=out)
    return write_outputs(command, federation, spec, module, result, out)


def _progress(command):
    if not command.progress:
        return None
    from tqdm import tqdm

    bar = tqdm(total=command.training.rounds, desc="rounds", unit="round", file=sys.stderr,
               disable=not command.progress)

    def on_round(row: dict) -> None:
        postfix = {"eps": f"{row['epsilon_max']:.3g}"}
        if "reconstruction" in row:
            postfix["recon"] = f"{row['reconstruction']:.4f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(row["round"] - bar.n)  # a resumed run starts after its checkpoint
        if row["round"] >= command.training.rounds:
            bar.close()

    return on_round


def write_outputs(command, federation, spec, module, result: RunResult, out) -> dict:
    """Write metrics, ledger, synthetic data, per-client results and the summary."""
    write_frame(result.round_metrics, out / "metrics.parquet")
    ledger = ledger_to_json(result.privacy_records)
    write_json(ledger, out / "privacy.json")
    rows = chosen_results(result.evaluations, command.evaluation.selection)
    write_frame(rows, out / "clients.parquet")

    synthetic_size = command.training.synthetic_size or sum(c.n_train for c in federation.clients)
    synthetic = module.synthetic_set(result.artifact, synthetic_size,
                                     torch_generator(command.seed, "released-synthetic"))
    if synthetic is not None:
        x, y = synthetic
        write_synthetic(x, y, out / "synthetic.parquet",
                        {"algorithm": command.algorithm, "class_names": spec.class_names or None,
                         "epsilon_max": ledger["epsilon_max"], "note": ledger["note"]})

    summary = summarize(rows)
    summary.update({
        "algorithm": command.algorithm,
        "epsilon_max": ledger["epsilon_max"],
        "delta": command.privacy.delta,
        "privacy_mode": command.privacy.privacy_mode if command.privacy.private else "none",
        "privacy_note": ledger["note"],
        "selection": command.evaluation.selection,
        "lambda": rows[0]["lambda"] if command.evaluation.selection == "global" else None,
        "rounds": command.training.rounds,
        "seconds": round(result.seconds, 2),
    })
    write_json(summary, out / "summary.json")

    print(format_ledger(result.privacy_records))
    print(f"\ndownstream ({command.evaluation.selection} λ on validation; test split per client):")
    print(f"  accuracy          {100 * summary['acc_mean']:.2f} ± {100 * summary['acc_std']:.2f} %")
    print(f"  balanced accuracy {100 * summary['bacc_mean']:.2f} ± {100 * summary['bacc_std']:.2f} %")
    print(f"  macro-F1          {100 * summary['f1_mean']:.2f} ± {100 * summary['f1_std']:.2f} %")
    note = ledger_note(result.privacy_records)
    if note:
        print("NOTE: " + note)
    print(f"run directory: {os.fspath(out)}  ({result.seconds:.1f} s)")
    return summary
