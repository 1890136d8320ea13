"""The one FedAvg job every peer script runs, and what the scripts share.

The job (issue #17): 10 clients × 2,000 train records of 768-d synthetic embeddings
(fedsim's generator, the data of ``benchmarks/ray_rounds.py``'s ``fedavg-10x2000``
case: 31,250 records, IID partition, each client's records split 64/16/20 into
train/val/test), a linear classifier 768 → 10, and per round every client runs one
local epoch of SGD (batch 128, lr 0.5, momentum 0.5 reset every round, weight decay
5e-4 — fedsim's FedAvg defaults) from the global model; the server averages the
models with weights ∝ n_i (FedAvg, server learning rate 1).

Data: generated ONCE by :func:`write_job_data` (``run.py`` does it before any timed
run) into an uncompressed ``.npz``; every script, fedsim's included, starts by loading
that file, so data generation is outside every system's time and loading it (about
0.1 s) is inside every system's time in the same way.

Clock: ``to_end_of_round_1_s`` runs from the process start.  ``run.py`` stamps the
wall clock just before it starts the subprocess (environment variable
``PEERS_LAUNCHED_AT``), so the interpreter start and every import count; a script run
by hand falls back to the moment it was imported, i.e. without the interpreter's own
start (about 0.02 s).

Accuracy: the final global model on the union of all clients' test splits (6,250
records), computed by :func:`test_accuracy` from the model's weight and bias, the same
function for every system.

This module imports only numpy at import time (fedsim and torch lazily), so a peer
script's imports are its system's own.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAUNCH_VARIABLE = "PEERS_LAUNCHED_AT"
STARTED_AT = float(os.environ.get(LAUNCH_VARIABLE, time.time()))
"""Wall-clock start of this process (module docstring, "Clock")."""

CLIENTS = 10
RECORDS_PER_CLIENT = 3125        # 3,125 records per client → 2,000 train (64 %), as ray_rounds.py
DIM = 768
CLASSES = 10
DATA_SEED = 0                    # fedsim's default run seed (TrainCommand.seed), which seeds its data
ROUNDS = 20
LOCAL_EPOCHS = 1
BATCH_SIZE = 128
LR = 0.5
MOMENTUM = 0.5
WEIGHT_DECAY = 5e-4
SPLITS = ("train", "val", "test")


def default_data_path(records_per_client: int = RECORDS_PER_CLIENT) -> Path:
    """Where ``run.py`` keeps the job's data (``runs/`` is not tracked by git)."""
    root = Path(__file__).resolve().parents[2]
    return root / "runs" / "peers" / f"fedavg-{CLIENTS}x{records_per_client}-d{DIM}-seed{DATA_SEED}.npz"


def write_job_data(path: Path, records_per_client: int = RECORDS_PER_CLIENT) -> Path:
    """Generate the job's federation with fedsim's synthetic generator and save every
    client's train/val/test arrays to ``path`` (keys ``x_train_0``, ``y_train_0``, …)."""
    from fedsim.data.federation import DataConfig, load_federation
    from fedsim.data.synthetic import SyntheticConfig

    config = DataConfig(num_clients=CLIENTS, partition="iid",
                        synthetic=SyntheticConfig(n_samples=CLIENTS * records_per_client, dim=DIM,
                                                  num_classes=CLASSES))
    federation = load_federation(config, DATA_SEED)
    arrays = {f"{a}_{split}_{c.client_id}": getattr(c, f"{a}_{split}")
              for c in federation.clients for split in SPLITS for a in ("x", "y")}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, num_clients=np.int64(len(federation.clients)), num_classes=np.int64(federation.num_classes),
             **arrays)
    partial.replace(path)
    return path


@dataclass(frozen=True)
class ClientArrays:
    """One client's records: float32 features, int64 labels."""

    client_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class JobData:
    """The federation as loaded from the job's ``.npz``."""

    clients: tuple[ClientArrays, ...]
    num_classes: int

    @property
    def dim(self) -> int:
        return int(self.clients[0].x_train.shape[1])

    def pooled_test(self) -> tuple[np.ndarray, np.ndarray]:
        """The union of every client's test split."""
        return (np.concatenate([c.x_test for c in self.clients]),
                np.concatenate([c.y_test for c in self.clients]))


def load_job_data(path: Path) -> JobData:
    """Read a file written by :func:`write_job_data`."""
    if not Path(path).exists():
        raise SystemExit(f"--data {path} does not exist; write it with `python benchmarks/peers/run.py "
                         "--prepare-only` (or run run.py, which writes it first).")
    with np.load(path) as npz:
        count = int(npz["num_clients"])
        clients = tuple(ClientArrays(i, *(npz[f"{a}_{split}_{i}"] for split in SPLITS for a in ("x", "y")))
                        for i in range(count))
        return JobData(clients, int(npz["num_classes"]))


cached_job_data = functools.lru_cache(maxsize=2)(load_job_data)
""":func:`load_job_data` read once per process (the Flower client's worker processes)."""


def parse_arguments(description: str, extra=None) -> argparse.Namespace:
    """``--rounds`` and ``--data`` (and ``extra(parser)``'s options) of a peer script."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"FedAvg rounds (default {ROUNDS}).")
    parser.add_argument("--data", type=Path, default=default_data_path(),
                        help="The job's .npz (default: the one run.py writes).")
    if extra is not None:
        extra(parser)
    arguments = parser.parse_args()
    if arguments.rounds < 2:
        parser.error("--rounds must be >= 2 (seconds per round is the median of rounds 2..R).")
    return arguments


def test_accuracy(weight: np.ndarray, bias: np.ndarray, data: JobData) -> float:
    """Accuracy of the linear classifier ``argmax(x Wᵀ + b)`` on the pooled test splits."""
    x, y = data.pooled_test()
    logits = x.astype(np.float64) @ np.asarray(weight, dtype=np.float64).T + np.asarray(bias, dtype=np.float64)
    return float((logits.argmax(axis=1) == y).mean())


def fedavg_weights(sizes) -> np.ndarray:
    """FedAvg's aggregation weights ``n_i / Σ n``."""
    sizes = np.asarray(sizes, dtype=np.float64)
    return sizes / sizes.sum()


def train_local_epochs(model, x, y, generator, epochs: int = LOCAL_EPOCHS) -> None:
    """The client step of the plain loop and of the Flower client: ``epochs`` passes of
    SGD (lr, momentum, weight decay of the job; a fresh optimizer, i.e. fresh momentum)
    over shuffled batches of ``BATCH_SIZE`` of the torch tensors ``x``, ``y``."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()


def report(system: str, round_ends: list[float], accuracy: float, **extra) -> dict:
    """Print and return the script's one JSON line.

    ``round_ends`` are the wall-clock times (``time.time()``) at which each round's
    aggregate was in place; round r's duration is ``round_ends[r] − round_ends[r−1]``
    for r ≥ 2 (round 1 is the first difference from the process start)."""
    durations = np.diff(round_ends).tolist()
    line = {"system": system,
            "to_end_of_round_1_s": round_ends[0] - STARTED_AT,
            "seconds_per_round": statistics.median(durations) if durations else float("nan"),
            "rounds": len(round_ends),
            "final_accuracy": accuracy,
            "total_s": time.time() - STARTED_AT,
            **extra}
    print(json.dumps(line), flush=True)
    return line
