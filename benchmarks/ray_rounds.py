"""Startup time and seconds per round of the ``local`` and ``ray`` backends (not a test).

    python benchmarks/ray_rounds.py                       # every case, both backends
    python benchmarks/ray_rounds.py --cases fedavg-10x2000 --backends ray

Cases (FedAvg, IID, 768-d synthetic embeddings, 10 classes, 1 local epoch, batch 128):

* ``fedavg-10x2000``: 10 clients × 2,000 train records (the headline figure);
* ``scale-10``, ``scale-100``, ``scale-1000``: 10, 100 and 1,000 clients × 32 train
  records (50 records each), every client per round for 10 and 100 clients, 10 %
  sampled per round for 1,000 (so ``scale-100`` and ``scale-1000`` both train 100
  clients a round);
* ``scale-10000`` (only when asked: ``--cases scale-10000``): 10,000 clients × 32 train
  records, 1 % sampled per round (100 clients trained a round again).

Figures per case and backend:

* startup: building the clients and the server; for Ray also ``ray.init`` (a fresh
  local Ray, no dashboard) and every actor's start (imports, client construction);
* first round, and seconds per round (mean, and median, of the later rounds: with many
  clients per actor a few slow rounds move the mean);
* Ray overhead per round: round time minus the busiest client actor's compute in it
  (its clients run one after the other, so that is the round's critical path; with one
  client per actor it is the slowest client's compute), mean of the later rounds;
* finish: release, finalisation, evaluation and ledger;
* memory: the driver's peak RSS so far (this process; cases run one after the other, so
  run a large case alone) and each fedsim actor process's peak RSS (``/proc``; pages of
  Ray's object store a process touched count in its RSS and are shared).

The machine is shared by other processes in some settings: the table header carries the
load average before and after.

First round from a cold process (``--first-round N``): each start-up runs in a fresh
Python process, N times interleaved, and the table gives medians of the seconds since
that process was launched at which it had imported fedsim, started Ray and the actors'
processes, loaded the data, had every actor ready (first round starts) and ended round 1:

    python benchmarks/ray_rounds.py --first-round 3 --cases fedavg-10x2000 --backends ray local

``ray`` starts as ``train`` and ``table`` do (Ray and the actors before the data,
:func:`fedsim.commands.training_run.backend_started`); ``ray-sequential`` loads the data
first and starts Ray and the actors after it (the order before that overlap);
``ray-one-actor`` is ``ray`` with every client on one actor (``--ray.max-actors 1``: one
client process fewer); ``ray-floor`` is the least any actor-based runtime pays: Ray started
and ONE actor that imports torch and answers, no fedsim, no data, no round (its
"round 1" is that answer) — a first round of fedsim on Ray cannot end before it.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Literal

import torch
import tyro

from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.backend import RayConfig
from fedsim.callbacks import RunCallback
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import backend_started, prepare, simulate
from fedsim.data.federation import DataConfig
from fedsim.data.synthetic import SyntheticConfig
from fedsim.simulation import LocalClientPool, run_federation

CaseName = Literal["fedavg-10x2000", "scale-10", "scale-100", "scale-1000", "scale-10000"]
CASES: dict[str, tuple[int, int, float, int]] = {  # clients, records per client, fraction, rounds
    "fedavg-10x2000": (10, 3125, 1.0, 20),          # 3125 records → 2000 train (64 %)
    "scale-10": (10, 50, 1.0, 10),
    "scale-100": (100, 50, 1.0, 6),
    "scale-1000": (1000, 50, 0.1, 6),
    "scale-10000": (10000, 50, 0.01, 6),           # not in the default cases: 1.5 GB of data
}


@dataclass(frozen=True)
class Benchmark:
    """Ray vs local: startup and seconds per round."""

    cases: tuple[CaseName, ...] = ("fedavg-10x2000", "scale-10", "scale-100", "scale-1000")
    """Cases to run (module docstring)."""
    backends: tuple[Literal["local", "ray", "ray-sequential", "ray-one-actor", "ray-floor"], ...] = ("local", "ray")
    """Backends to compare (``ray-sequential``, ``ray-one-actor``, ``ray-floor``: only with ``--first-round``, module docstring)."""
    first_round: int = 0
    """Instead of the round table: time the start-up to the end of round 1 in this many fresh processes per case and backend, interleaved (module docstring)."""
    probe: str = ""
    """Internal: ``case/backend/launch time`` of one cold-start measurement in this process."""
    num_cpus: int = 0
    """CPUs of the local Ray (0 = every core)."""
    rounds: int = 0
    """Rounds per case (0 = the case's default: 20, 10, 6, 6)."""
    threads: int = 0
    """torch threads of the local backend (0 = every core)."""


def command_of(case: str, rounds: int) -> TrainCommand:
    clients, records, fraction, default_rounds = CASES[case]
    return TrainCommand(
        algorithm="fedavg",
        data=DataConfig(num_clients=clients, partition="iid",
                        synthetic=SyntheticConfig(n_samples=clients * records, dim=768, num_classes=10)),
        training=TrainingConfig(rounds=rounds or default_rounds, client_fraction=fraction),
        fedavg=FedAvgConfig(),
        checkpoint_every=0, progress=False)


class RoundTimes(RunCallback):
    """Appends every round's row with its end time to ``rows``; with a Ray ``pool``, the
    round's driver overhead (its seconds minus the busiest actor's) to ``overheads``."""

    def __init__(self, rows: list, pool=None, overheads: list | None = None) -> None:
        self.rows, self.pool, self.overheads = rows, pool, overheads

    def on_round_end(self, round_index: int, row: dict, result) -> None:
        self.rows.append({**row, "_at": time.perf_counter()})
        if self.pool is not None:
            busiest = max(self.pool.round_stats["actor_seconds"].values(), default=0.0)
            self.overheads.append(row["seconds"] - busiest)


def run_case(case: str, backend: str, bench: Benchmark) -> dict:
    command = command_of(case, bench.rounds)
    prepared = prepare(command)
    rows, overheads = [], []
    started = time.perf_counter()
    if backend == "local":
        if bench.threads:
            torch.set_num_threads(bench.threads)
        server = prepared.module.make_server(prepared.spec, prepared.settings)
        pool = LocalClientPool(prepared.federation, prepared.spec, prepared.settings)
        startup = time.perf_counter() - started
        layout = "in-process"
        result = run_federation(server, pool, prepared.settings, [RoundTimes(rows)])
        init = 0.0
        actor_peaks = []
    else:
        import ray  # inside the timed start-up, like the Ray runtime it starts

        from actors.driver import ray_federation

        ray.init(include_dashboard=False, num_cpus=bench.num_cpus or os.cpu_count(),
                 logging_level=logging.WARNING, log_to_driver=False)
        init = time.perf_counter() - started
        try:
            with ray_federation(prepared, RayConfig(), verbose=False) as (server, pool):
                startup = time.perf_counter() - started
                layout = f"{pool.plan.num_actors} × {pool.plan.clients_per_actor}"

                result = run_federation(server, pool, prepared.settings, [RoundTimes(rows, pool, overheads)])
                actor_peaks = actor_peak_rss_gb()
        finally:
            ray.shutdown()
    ended = time.perf_counter()
    total = ended - started
    seconds = [row["seconds"] for row in rows]
    later = seconds[1:] or seconds
    finish = ended - rows[-1]["_at"]
    return {
        "case": case, "backend": backend, "clients": len(prepared.federation.clients),
        "sampled": rows[0]["clients"] if rows else 0, "layout": layout, "init": init, "startup": startup,
        "first": seconds[0], "per_round": statistics.mean(later), "median_round": statistics.median(later),
        "overhead": statistics.mean(overheads[1:] or overheads) if overheads else None,
        "finish": finish, "total": total, "rounds": len(rows), "ok": len(result.evaluations) == len(pool.client_ids),
        "driver_gb": peak_rss_gb(os.getpid()), "actor_gb": actor_peaks,
    }


def peak_rss_gb(pid: int) -> float:
    """Peak resident set size of process ``pid`` (``VmHWM`` of ``/proc/<pid>/status``), GB;
    NaN where ``/proc`` cannot tell (not Linux, process gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def actor_peak_rss_gb() -> list[float]:
    """Peak RSS of this machine's fedsim actor processes (``ray::ClientActor`` and
    ``ray::ServerActor`` in their command lines), GB, largest first.  Pages of Ray's object
    store that a process touched count in its RSS (shared between processes)."""
    peaks = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().decode(errors="replace")
        except OSError:
            continue
        if command.startswith(("ray::ClientActor", "ray::ServerActor")):
            peaks.append(peak_rss_gb(int(entry)))
    return sorted(peaks, reverse=True)


class FirstRound(RunCallback):
    """Wall-clock times at which round 1 started (every actor ready) and ended."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.ended: float | None = None

    def on_round_start(self, round_index: int, ids) -> None:
        if self.started is None:
            self.started = time.time()

    def on_round_end(self, round_index: int, row: dict, result) -> None:
        if self.ended is None:
            self.ended = time.time()


class TorchActor:
    """``ray-floor``'s actor: imports torch (what every fedsim actor does first) and answers."""

    def __init__(self) -> None:
        import torch as actor_torch
        self.threads = actor_torch.get_num_threads()

    def ready(self) -> int:
        return self.threads


def ray_floor(launched: float, imported: float) -> dict:
    """``ray-floor`` (module docstring): Ray started as fedsim starts it, one torch actor ready."""
    import ray

    times = {"imports": imported}
    ray.init(include_dashboard=False, num_cpus=os.cpu_count() or 1, logging_level=logging.WARNING,
             log_to_driver=False)
    try:
        actor = ray.remote(TorchActor).options(num_cpus=1).remote()  # type: ignore[attr-defined]
        times["ray_and_actors_started"] = times["data"] = time.time()
        ray.get(actor.ready.remote())
        times["actors_ready"] = times["round_1"] = time.time()
    finally:
        ray.shutdown()
    return {k: v - launched for k, v in times.items()}


def probe_first_round(case: str, backend: str, launched: float, imported: float) -> dict:
    """One cold start of ``case`` on ``backend`` in this process (module docstring): the
    seconds since ``launched`` of each phase's end; rounds after the first are cut to one."""
    if backend == "ray-floor":
        return {"case": case, "backend": backend, **ray_floor(launched, imported)}
    command = replace(command_of(case, 2), backend="local" if backend == "local" else "ray",
                      ray=RayConfig(num_cpus=os.cpu_count() or 1, max_actors=1 if backend == "ray-one-actor" else 0))
    rounds = FirstRound()
    times = {"imports": imported}
    if backend == "ray-sequential":
        prepared = prepare(command)
        times["data"] = time.time()
        with backend_started(command) as started:
            times["ray_and_actors_started"] = time.time()
            simulate(command, prepared, [rounds], started=started)
    else:
        with backend_started(command) as started:
            times["ray_and_actors_started"] = time.time()
            prepared = prepare(command)
            times["data"] = time.time()
            simulate(command, prepared, [rounds], started=started)
    assert rounds.started is not None and rounds.ended is not None
    times.update({"actors_ready": rounds.started, "round_1": rounds.ended})
    return {"case": case, "backend": backend, **{k: v - launched for k, v in times.items()}}


def first_round_table(bench: Benchmark) -> str:
    """``--first-round N``: N interleaved cold starts per case and backend; medians."""
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(bench.first_round):
        for case in bench.cases:
            for backend in bench.backends:
                launched = time.time()
                done = subprocess.run([sys.executable, __file__, "--probe", f"{case}/{backend}/{launched!r}"],
                                      capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                runs.setdefault((case, backend), []).append(row)
                print(f"{repeat + 1}/{bench.first_round} {case} {backend}: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in row.items() if isinstance(v, float)), flush=True)
    phases = ("imports", "ray_and_actors_started", "data", "actors_ready", "round_1")
    lines = [(f"load average (1, 5, 15 min): before {load_before}, after "
              f"{tuple(round(x, 2) for x in os.getloadavg())}; {os.cpu_count()} cores; medians of "
              f"{bench.first_round} cold starts, seconds since the process was launched"), "",
             "| case | backend | " + " | ".join(phases) + " | round 1 ÷ local |", "|---|---|" + "---:|" * (len(phases) + 1)]
    for (case, backend), rows in runs.items():
        medians = {p: statistics.median(row[p] for row in rows) for p in phases}
        local = runs.get((case, "local"))
        ratio = medians["round_1"] / statistics.median(row["round_1"] for row in local) if local else float("nan")
        lines.append(f"| {case} | {backend} | " + " | ".join(f"{medians[p]:.1f}" for p in phases) + f" | {ratio:.2f} |")
    return "\n".join(lines)


def markdown(results: list[dict], load_before, load_after) -> str:
    lines = [f"load average (1, 5, 15 min): before {load_before}, after {load_after}; {os.cpu_count()} cores",
             "",
             "| case | backend | clients | trained/round | actors × clients | ray.init s | startup s | "
             "first round s | s/round | median s/round | Ray overhead s/round | finish s | rounds | completed | "
             "driver peak RSS GB | actors' peak RSS GB |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in results:
        overhead = "—" if r["overhead"] is None else f"{r['overhead']:.3f}"
        init = "—" if r["backend"] == "local" else f"{r['init']:.1f}"
        lines.append(f"| {r['case']} | {r['backend']} | {r['clients']} | {r['sampled']} | {r['layout']} | {init} | "
                     f"{r['startup']:.1f} | {r['first']:.3f} | {r['per_round']:.3f} | {r['median_round']:.3f} | {overhead} | "
                     f"{r['finish']:.1f} | {r['rounds']} | {'yes' if r['ok'] else 'NO'} | {r['driver_gb']:.2f} | "
                     + (" / ".join(f"{gb:.2f}" for gb in r["actor_gb"]) or "—") + " |")
    return "\n".join(lines)


def main(bench: Benchmark) -> None:
    if bench.probe:
        case, backend, launched = bench.probe.split("/")
        print(json.dumps(probe_first_round(case, backend, float(launched), IMPORTED)))
        return
    if bench.first_round:
        print(first_round_table(bench))
        return
    only_first = [b for b in bench.backends if b in ("ray-sequential", "ray-one-actor", "ray-floor")]
    if only_first:
        raise SystemExit(f"--backends {' '.join(only_first)}: --first-round measurements only")
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    results = []
    for case in bench.cases:
        for backend in bench.backends:
            result = run_case(case, backend, bench)
            results.append(result)
            print(f"{case:16s} {backend:5s} startup {result['startup']:6.1f} s  "
                  f"{result['per_round']:.3f} s/round", flush=True)
            gc.collect()
    print()
    print(markdown(results, load_before, tuple(round(x, 2) for x in os.getloadavg())))


IMPORTED = time.time()  # this module's imports (fedsim, torch, tyro) are done

if __name__ == "__main__":
    main(tyro.cli(Benchmark))
