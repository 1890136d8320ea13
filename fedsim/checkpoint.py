"""Checkpoint files of a federation run: reading and writing, nothing else.

Layout, inside the run directory (every file written to a temporary name first; a
checkpoint directory is renamed into place only once complete, then ``latest.json``
is replaced atomically and older checkpoints are removed)::

    checkpoints/latest.json                  {"rounds_done": 10, "directory": "round-000010-<tag>"}
    checkpoints/round-000010-<tag>/state.pt  server state, round metrics, seconds, the
                                             command, the driver's RNG states, shard list
    checkpoints/round-000010-<tag>/clients-*.pt  client states, SHARD_SIZE clients a file

Client states are written by whoever holds the clients (the local pool, or each Ray
client actor for its own clients) through :func:`save_client_states`, so no process
ever holds a copy of every client's state; with ``--backend ray`` on a multi-node
cluster the run directory must therefore be on storage every node sees.

Who uses these files: :class:`fedsim.callbacks.CheckpointCallback` writes them during a
run, :func:`fedsim.simulation.resume_run` loads the latest one into a server and a
pool before the rounds continue (the rounds after it are run again with the same
seeds, so they reproduce the lost rounds exactly and release nothing new), and
:mod:`fedsim.commands.resume` decides which configuration a ``--resume`` continues
with.  The ledger of clients lost with a Ray worker is fixed by
:mod:`fedsim.privacy.recovery`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from fedsim.errors import UserError
from fedsim.io_utils import atomic_path, write_json_atomic

CHECKPOINTS = "checkpoints"
SHARD_SIZE = 256
FORMAT = 2  # 2: client states hold a privacy_state (accountant and noise stream)


# --- client states (called by whoever holds the clients) ---------------------------------
def save_client_states(clients: Mapping[int, Any], ids: Sequence[int], directory: str | Path) -> list[dict]:
    """Write the states of clients ``ids`` as shards into ``directory``; return the shard list."""
    directory = Path(directory)
    shards = []
    ids = sorted(ids)
    for start in range(0, len(ids), SHARD_SIZE):
        chunk = ids[start:start + SHARD_SIZE]
        name = f"clients-{chunk[0]:06d}.pt"
        with atomic_path(directory / name) as tmp:
            torch.save({cid: clients[cid].state_dict() for cid in chunk}, tmp)
        shards.append({"file": name, "ids": list(chunk)})
    return shards


def load_client_states(clients: Mapping[int, Any], directory: str | Path, shards: Sequence[dict]) -> list[int]:
    """Load the states of every client in ``clients`` that ``shards`` hold; return their ids."""
    directory = Path(directory)
    loaded = []
    for shard in shards:
        wanted = [cid for cid in shard["ids"] if cid in clients]
        if not wanted:
            continue
        states = torch.load(directory / shard["file"], weights_only=False)
        for cid in wanted:
            clients[cid].load_state_dict(states[cid])
            loaded.append(cid)
    return loaded


# --- the run's checkpoints ---------------------------------------------------------------
@dataclass
class Checkpoint:
    """A checkpoint of a run directory, read back or just written."""

    directory: Path
    rounds_done: int
    server: dict
    round_metrics: list[dict]
    seconds: float
    shards: list[dict]
    command: Any
    rng: dict = field(default_factory=dict)


def checkpoint_root(run_dir: str | Path) -> Path:
    """The checkpoints directory of ``run_dir``."""
    return Path(run_dir) / CHECKPOINTS


def rng_states() -> dict:
    """The driver process's global RNG states (torch, numpy, random), as saved in a checkpoint."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: dict) -> None:
    """Restore the global RNG states :func:`rng_states` saved (those present in ``states``)."""
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])
    if "python" in states:
        random.setstate(states["python"])


def write_checkpoint(run_dir: str | Path, rounds_done: int, server, pool, round_metrics: list[dict],
                     seconds: float, command: Any) -> Checkpoint:
    """Write the checkpoint after ``rounds_done`` rounds (module docstring): ``pool``
    writes its clients' states, this process the server state, the rows, ``seconds``,
    ``command`` and the RNG states.  Returns what was written."""
    root = checkpoint_root(run_dir)
    tag = uuid.uuid4().hex[:8]
    final = root / f"round-{rounds_done:06d}-{tag}"
    tmp = root / f".round-{rounds_done:06d}-{tag}.{os.getpid()}.tmp"
    tmp.mkdir(parents=True)
    try:
        shards = pool.save_states(tmp)
        state = {"format": FORMAT, "rounds_done": rounds_done, "server": server.state_dict(),
                 "round_metrics": list(round_metrics), "seconds": seconds, "shards": shards,
                 "command": command, "rng": rng_states()}
        with atomic_path(tmp / "state.pt") as path:
            torch.save(state, path)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic({"rounds_done": rounds_done, "directory": final.name}, root / "latest.json")
    for old in root.glob("round-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return Checkpoint(final, rounds_done, state["server"], state["round_metrics"], seconds, shards, command,
                      state["rng"])


def load_checkpoint(run_dir: str | Path) -> Checkpoint:
    """The latest checkpoint of ``run_dir``; a UserError if there is none."""
    root = checkpoint_root(run_dir)
    latest = root / "latest.json"
    if not latest.is_file():
        raise UserError(f"--resume {run_dir}: no checkpoint found ({latest} is missing); "
                        "runs write checkpoints with --checkpoint-every K.")
    pointer = json.loads(latest.read_text(encoding="utf-8"))
    directory = root / pointer["directory"]
    state = torch.load(directory / "state.pt", weights_only=False)
    if state.get("format") != FORMAT:
        raise UserError(f"--resume {run_dir}: checkpoint format {state.get('format')!r} is not "
                        f"supported (this fedsim writes format {FORMAT}).")
    return Checkpoint(directory, state["rounds_done"], state["server"], state["round_metrics"],
                      state["seconds"], state["shards"], state["command"], state.get("rng", {}))
