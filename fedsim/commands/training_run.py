"""The body of ``train``: validate, build, run, write the run directory, print results."""

from __future__ import annotations

import os
import sys

import torch

from fedsim.algorithms.registry import RunSettings, algorithm_module
from fedsim.algorithms.spec import FederationSpec
from fedsim.data.federation import load_federation
from fedsim.evaluation.blend import chosen_results, summarize
from fedsim.outputs import config_dict, write_frame, write_json, write_synthetic
from fedsim.privacy.ledger import format_ledger, ledger_note, ledger_to_json
from fedsim.seeding import torch_generator
from fedsim.simulation import LocalClientPool, RunResult, run_federation


def validate(command) -> None:
    """Every option checked before any work starts."""
    command.data.validate()
    command.privacy.validate()
    command.training.validate()


def run_training(command) -> dict:
    """Run ``command`` (a :class:`~fedsim.commands.train.TrainCommand`); return the summary."""
    validate(command)
    if command.threads > 0:
        torch.set_num_threads(command.threads)
    federation = load_federation(command.data, command.seed)
    spec = FederationSpec(len(federation.clients), federation.num_classes, federation.dim,
                          tuple(federation.class_names))
    settings = RunSettings(command.algorithm, command.method_config(), command.privacy,
                           command.training, command.evaluation, command.seed)
    module = algorithm_module(command.algorithm)
    out = command.run_directory()
    out.mkdir(parents=True, exist_ok=True)
    write_json(config_dict(command), out / "config.json")

    print(f"fedsim: {command.algorithm} on {federation.dataset_name} — {spec.num_clients} clients, "
          f"{command.data.partition} partition, ε={command.privacy.epsilon}, δ={command.privacy.delta}, "
          f"{command.training.rounds} rounds → {out}", file=sys.stderr)
    server = module.make_server(spec, settings)
    pool = LocalClientPool(federation, spec, settings)
    result = run_federation(server, pool, settings, on_round=_progress(command))
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
        bar.update(1)
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
