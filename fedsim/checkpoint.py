"""Checkpoints of a federation run, ``--resume``, and client recovery after a lost worker.

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

Resume: the rounds after the checkpoint are run again from the saved state with the
same seeds, so they reproduce the lost rounds exactly: same updates, same noise, the
same outputs.  Repeating a mechanism's run with the same randomness releases nothing
new, and the resumed run's ledger equals the uninterrupted one's.

Recovery (:func:`recover_client`, used by the Ray pool when a client actor dies): the
clients of the lost actor restart from the last checkpoint (or their initial state),
but their DP-SGD steps since then WERE run, and the updates of the completed rounds
were released.  Their accountant is therefore set to the last one they reported after
a completed round, plus a full round of steps for every round that was started but
not confirmed (the round in which the actor died, and any round it was late for):
the ledger errs on the side of more ε.  The client's noise generator is then re-seeded
from a fresh stream: re-running rounds from old generator states on a new broadcast
would reuse noise already released, and two outputs with the same noise would reveal
their noiseless difference.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from fedsim.errors import UserError
from fedsim.io_utils import atomic_path, write_json_atomic

CHECKPOINTS = "checkpoints"
SHARD_SIZE = 256
FORMAT = 1
# TrainCommand fields that change how a run executes, not what it computes
RUNTIME_FIELDS = ("backend", "ray", "threads", "progress", "out", "resume", "checkpoint_every")


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


def accountant_state(client) -> dict:
    """The client's privacy accountant as a small dict (ledger data, nothing private)."""
    return client.accountant.state_dict()


def round_charge(client, local_epochs: int) -> tuple[float, float, int] | None:
    """``(σ, q, steps)`` of one full local round of ``client`` (None without DP): the
    ``local_epochs × ⌈n/B⌉`` DP-SGD steps its plan was calibrated for."""
    privacy, plan = getattr(client, "privacy", None), getattr(client, "plan", None)
    if plan is None or privacy is None:
        raise RuntimeError(f"client {client.client_id} ({type(client).__name__}) has no DP plan; "
                           "fault recovery cannot charge its lost rounds")
    if not privacy.private:
        return None
    return plan.noise_multiplier, plan.sample_rate, local_epochs * plan.steps_per_epoch


def recover_client(client, confirmed: dict | None, unconfirmed_rounds: int, local_epochs: int,
                   seed: int, round_index: int, restart: int) -> None:
    """Fix a client just restored from a checkpoint after its worker died (module docstring).

    ``confirmed`` is the accountant state it reported after its last completed round
    (None if it completed none since it was built); ``unconfirmed_rounds`` the rounds it
    started without confirming.  The accountant object is updated in place (trainers
    hold references to it)."""
    from fedsim.privacy.accounting import ClientAccountant
    from fedsim.seeding import torch_generator

    accountant = client.accountant
    if confirmed is not None:
        reported = ClientAccountant.from_state_dict(confirmed)
        if reported.steps(False) >= accountant.steps(False):
            accountant.history[:] = reported.history
            accountant.kinds[:] = reported.kinds
    charge = round_charge(client, local_epochs)
    if charge is not None and unconfirmed_rounds > 0:
        sigma, rate, steps = charge
        accountant.record(sigma, rate, steps * unconfirmed_rounds, kind="dp-sgd")
    fresh = torch_generator(seed, "recovery", client.client_id, round_index, restart)
    client.generator.manual_seed(int(torch.randint(0, 2**62, (1,), generator=fresh)))


# --- the run's checkpoints ---------------------------------------------------------------
@dataclass
class Checkpoint:
    """A checkpoint read back from a run directory."""

    directory: Path
    rounds_done: int
    server: dict
    round_metrics: list[dict]
    seconds: float
    shards: list[dict]
    command: Any
    rng: dict = field(default_factory=dict)


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def _rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_states(states: dict) -> None:
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])
    if "python" in states:
        random.setstate(states["python"])


def write_checkpoint(run_dir: str | Path, rounds_done: int, server, pool, round_metrics: list[dict],
                     seconds: float, command: Any) -> Path:
    """Write the checkpoint after ``rounds_done`` rounds (module docstring); return its directory."""
    root = checkpoint_root(run_dir)
    tag = uuid.uuid4().hex[:8]
    final = root / f"round-{rounds_done:06d}-{tag}"
    tmp = root / f".round-{rounds_done:06d}-{tag}.{os.getpid()}.tmp"
    tmp.mkdir(parents=True)
    try:
        shards = pool.save_states(tmp)
        state = {"format": FORMAT, "rounds_done": rounds_done, "server": server.state_dict(),
                 "round_metrics": list(round_metrics), "seconds": seconds, "shards": shards,
                 "command": command, "rng": _rng_states()}
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
    if hasattr(pool, "checkpoint_written"):
        pool.checkpoint_written(final, shards)
    return final


def load_checkpoint(run_dir: str | Path) -> Checkpoint:
    """The latest checkpoint of ``run_dir``; a UserError if there is none."""
    import json

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


class CheckpointWriter:
    """``on_checkpoint`` callback of :func:`~fedsim.simulation.run_federation`: writes a
    checkpoint every ``every`` rounds and after the last round."""

    def __init__(self, run_dir: str | Path, every: int, total_rounds: int, server, pool, command: Any,
                 seconds_before: float = 0.0) -> None:
        self.run_dir, self.every, self.total_rounds = Path(run_dir), every, total_rounds
        self.server, self.pool, self.command = server, pool, command
        self.seconds_before = seconds_before
        self.started = time.perf_counter()
        self.written: list[int] = []

    def __call__(self, rounds_done: int, result) -> None:
        if self.every <= 0 or (rounds_done % self.every and rounds_done != self.total_rounds):
            return
        seconds = self.seconds_before + time.perf_counter() - self.started
        write_checkpoint(self.run_dir, rounds_done, self.server, self.pool, result.round_metrics,
                         seconds, self.command)
        self.written.append(rounds_done)


def run_with_checkpoints(server, pool, settings, *, run_dir: str | Path | None, every: int,
                         resume: bool, command: Any = None,
                         on_round: Callable[[dict], None] | None = None):
    """:func:`~fedsim.simulation.run_federation`, resumed from ``run_dir``'s latest
    checkpoint when ``resume``, writing checkpoints every ``every`` rounds (0 = never)."""
    from fedsim.simulation import RunResult, run_federation

    start, result, seconds_before = 0, None, 0.0
    if resume:
        checkpoint = load_checkpoint(run_dir)
        server.load_state_dict(checkpoint.server)
        pool.load_states(checkpoint.directory, checkpoint.shards)
        if hasattr(pool, "checkpoint_written"):
            pool.checkpoint_written(checkpoint.directory, checkpoint.shards)
        _set_rng_states(checkpoint.rng)
        start, seconds_before = checkpoint.rounds_done, checkpoint.seconds
        result = RunResult(round_metrics=list(checkpoint.round_metrics), seconds=checkpoint.seconds)
    writer = None
    if every > 0:
        if run_dir is None:
            raise ValueError("checkpoints need a run directory")
        writer = CheckpointWriter(run_dir, every, settings.training.rounds, server, pool, command, seconds_before)
    return run_federation(server, pool, settings, on_round=on_round, start_round=start, result=result,
                          on_checkpoint=writer)


# --- --resume: which configuration continues ---------------------------------------------
def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            out.update(_flatten(getattr(value, f.name), f"{prefix}{f.name}."))
        return out
    return {prefix[:-1]: value}


def resume_command(current, saved, run_dir: str | Path):
    """The command a ``--resume run_dir`` continues with: ``saved`` (the run's own
    configuration) with the runtime options of ``current``, i.e. of this command line
    (backend, Ray options, threads, progress, checkpoint cadence; they do not change
    results).  Options that change results must not be given with ``--resume`` unless
    they equal the saved ones (a UserError names them)."""
    default = type(current)()
    now, before, base = _flatten(current), _flatten(saved), _flatten(default)

    def runtime(key: str) -> bool:
        return key.split(".")[0] in RUNTIME_FIELDS

    conflicts = [key for key, value in now.items()
                 if not runtime(key) and value != base.get(key) and value != before.get(key)]
    if conflicts:
        options = ", ".join("--" + k.replace("_", "-") for k in conflicts[:4])
        raise UserError(f"--resume {run_dir} continues the run with its saved configuration; drop {options} "
                        "(they differ from the saved values).")
    overrides = {name: getattr(current, name) for name in RUNTIME_FIELDS if hasattr(current, name)}
    overrides["out"] = Path(run_dir)
    overrides["resume"] = Path(run_dir)
    return dataclasses.replace(saved, **{k: v for k, v in overrides.items() if hasattr(saved, k)})
