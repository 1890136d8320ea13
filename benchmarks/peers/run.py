"""fedsim beside a plain PyTorch loop, Flower and pfl-research on one FedAvg job (not a test).

    python benchmarks/peers/run.py                  # 5 interleaved repeats of every system, 20 rounds
    python benchmarks/peers/run.py --repeats 1 --rounds 3 --records-per-client 200   # a quick check

Writes the job's data once (job.write_job_data, outside every timing), then runs every
system's script (``SYSTEMS``) in a fresh subprocess, round-robin: repeat 1 runs each
system once, then repeat 2, …, the starting system rotating from repeat to repeat so
that no system always follows the same one.  Each script prints one JSON line
(job.report); this prints the medians over the repeats as a Markdown table with the
date, the machine (cores, CPU model, load average before and after) and the package
versions.  The ratio column is the median seconds per round over the plain loop's.
A system whose package is missing from the interpreter is listed as not installed,
with the pip command; a run that fails is reported with the end of its stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import job

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FEDSIM = f'pip install -e "{ROOT}"'


@dataclass(frozen=True)
class System:
    """One row of the table: the script that runs it and the packages it needs."""

    name: str
    script: str
    arguments: tuple[str, ...]
    modules: tuple[str, ...]
    install: str


SYSTEMS = (
    System("plain PyTorch loop", "plain_torch.py", (), ("torch",), "pip install torch==2.13.0"),
    System("fedsim --backend ray", "fedsim_job.py", ("--backend", "ray"), ("fedsim", "ray"), FEDSIM),
    System("fedsim --backend local", "fedsim_job.py", ("--backend", "local"), ("fedsim",), FEDSIM),
    System("Flower 1.42 simulation", "flower_job.py", (), ("flwr", "ray"),
           'pip install "flwr[simulation]==1.42.0"'),
    System("pfl-research 0.6 (Apple)", "pfl_job.py", (), ("pfl",), 'pip install "pfl[pytorch]==0.6.0"'),
)
PACKAGES = ("torch", "numpy", "fedsim", "ray", "flwr", "pfl")
PROBE = """
import importlib.metadata, importlib.util, json, sys
found = {name: importlib.util.find_spec(name) is not None for name in sys.argv[1].split(",")}
versions = {}
for name in sys.argv[2].split(","):
    try:
        versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        versions[name] = None
print(json.dumps({"found": found, "versions": versions, "python": sys.version.split()[0]}))
"""


def child_environment() -> dict[str, str]:
    """This environment, with the repository first on PYTHONPATH (fedsim from this tree)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def probe(python: str) -> dict:
    """Which modules ``python`` can import, and the installed package versions."""
    modules = sorted({m for s in SYSTEMS for m in s.modules})
    output = subprocess.run([python, "-c", PROBE, ",".join(modules), ",".join(PACKAGES)], env=child_environment(),
                            capture_output=True, text=True, check=True).stdout
    return json.loads(output)


def run_once(system: System, arguments: argparse.Namespace) -> dict:
    """One fresh process of ``system``'s script; its JSON line, or an error."""
    command = [arguments.python, str(HERE / system.script), *system.arguments,
               "--rounds", str(arguments.rounds), "--data", str(arguments.data)]
    env = child_environment()
    env[job.LAUNCH_VARIABLE] = repr(time.time())
    try:
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=arguments.timeout)
    except subprocess.TimeoutExpired:
        return {"system": system.name, "error": f"timed out after {arguments.timeout} s"}
    reported = report_line(finished.stdout)
    if finished.returncode != 0 or reported is None:
        tail = " | ".join((finished.stderr or finished.stdout).strip().splitlines()[-3:])
        return {"system": system.name, "error": f"exit {finished.returncode}: {tail}"}
    return {**reported, "system": system.name}


def report_line(stdout: str) -> dict | None:
    """The last line of ``stdout`` that is a job.report JSON object (frameworks log too)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict) and {"to_end_of_round_1_s", "seconds_per_round",
                                             "final_accuracy"} <= parsed.keys():
                return parsed
    return None


def machine() -> str:
    """Cores, CPU model and OS of this machine."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores (nproc), {model}, {platform.system()} {platform.release()}"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def table(systems, runs: list[dict], missing: dict[str, str]) -> list[str]:
    """Markdown rows: medians over each system's successful runs."""
    lines = ["| system | to end of round 1 | s/round | × plain-PyTorch loop | final accuracy | runs |",
             "|---|---:|---:|---:|---:|---:|"]
    medians = {}
    for system in systems:
        done = [r for r in runs if r["system"] == system.name and "error" not in r]
        if done:
            medians[system.name] = {key: statistics.median(r[key] for r in done)
                                    for key in ("to_end_of_round_1_s", "seconds_per_round", "final_accuracy")}
    floor = medians.get(SYSTEMS[0].name, {}).get("seconds_per_round")
    for system in systems:
        if system.name in missing:
            lines.append(f"| {system.name} | not installed ({missing[system.name]}) | | | | 0 |")
            continue
        attempted = [r for r in runs if r["system"] == system.name]
        if system.name not in medians:
            lines.append(f"| {system.name} | failed: {attempted[-1]['error'][:200]} | | | | 0/{len(attempted)} |")
            continue
        m = medians[system.name]
        ratio = f"{m['seconds_per_round'] / floor:.2f}" if floor else "—"
        count = sum("error" not in r for r in attempted)
        lines.append(f"| {system.name} | {m['to_end_of_round_1_s']:.1f} s | {m['seconds_per_round']:.3f} | {ratio} | "
                     f"{m['final_accuracy']:.3f} | {count}/{len(attempted)} |")
    return lines


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="Interleaved runs of every system (default 5).")
    parser.add_argument("--rounds", type=int, default=job.ROUNDS, help=f"FedAvg rounds (default {job.ROUNDS}).")
    parser.add_argument("--records-per-client", type=int, default=job.RECORDS_PER_CLIENT,
                        help=f"Records per client before the 64/16/20 split (default {job.RECORDS_PER_CLIENT}"
                             " → 2,000 train).")
    parser.add_argument("--systems", nargs="+", choices=[s.script.removesuffix(".py") + (
        "" if not s.arguments else ":" + s.arguments[-1]) for s in SYSTEMS], default=None,
        help="Subset to run (default all): plain_torch, fedsim_job:ray, fedsim_job:local, flower_job, pfl_job.")
    parser.add_argument("--python", default=sys.executable,
                        help="Interpreter of the systems' scripts (default this one); it needs their packages.")
    parser.add_argument("--timeout", type=float, default=900.0, help="Seconds one run may take (default 900).")
    parser.add_argument("--json", type=Path, default=None, help="Also write every run's JSON line here.")
    parser.add_argument("--prepare-only", action="store_true", help="Write the job's data and stop.")
    arguments = parser.parse_args()
    if arguments.repeats < 1 or arguments.rounds < 2 or arguments.records_per_client < 5:
        parser.error("--repeats must be >= 1, --rounds >= 2 and --records-per-client >= 5.")
    arguments.data = job.default_data_path(arguments.records_per_client)
    return arguments


def selected(arguments) -> list[System]:
    if not arguments.systems:
        return list(SYSTEMS)
    keys = {s.script.removesuffix(".py") + ("" if not s.arguments else ":" + s.arguments[-1]): s for s in SYSTEMS}
    return [keys[k] for k in arguments.systems]


def main() -> None:
    arguments = parse_arguments()
    sys.path.insert(1, str(ROOT))  # fedsim from this tree writes the data
    if not arguments.data.exists():
        started = time.time()
        job.write_job_data(arguments.data, arguments.records_per_client)
        print(f"wrote {arguments.data} in {time.time() - started:.1f} s (not timed)", file=sys.stderr)
    if arguments.prepare_only:
        return
    environment = probe(arguments.python)
    systems = selected(arguments)
    missing = {s.name: s.install for s in systems if not all(environment["found"][m] for m in s.modules)}
    runnable = [s for s in systems if s.name not in missing]
    load_before, started = load_average(), datetime.datetime.now(datetime.timezone.utc)
    runs = []
    for repeat in range(arguments.repeats):
        shift = repeat % max(1, len(runnable))
        for system in runnable[shift:] + runnable[:shift]:
            result = run_once(system, arguments)
            runs.append(result)
            summary = result.get("error") or (f"round 1 at {result['to_end_of_round_1_s']:.1f} s, "
                                              f"{result['seconds_per_round']:.3f} s/round, "
                                              f"accuracy {result['final_accuracy']:.3f}")
            print(f"[{repeat + 1}/{arguments.repeats}] {system.name}: {summary}", file=sys.stderr, flush=True)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text("\n".join(json.dumps(r) for r in runs) + "\n")
    versions = ", ".join(f"{k} {v}" for k, v in environment["versions"].items() if v)
    clients = job.CLIENTS
    train = round(arguments.records_per_client * 0.64)
    print(f"FedAvg, {clients} clients × ~{train:,} train records × {job.DIM}-d, linear classifier, "
          f"{job.LOCAL_EPOCHS} local epoch, batch {job.BATCH_SIZE}, {arguments.rounds} rounds; "
          f"{arguments.repeats} interleaved run(s) per system, medians (s/round: median of rounds 2..R).")
    print(f"Date {started:%Y-%m-%d %H:%M} UTC; machine {machine()}; load average (1, 5, 15 min) "
          f"before {load_before}, after {load_average()}.")
    print(f"Python {environment['python']}; {versions}.")
    print()
    print("\n".join(table(systems, runs, missing)))


if __name__ == "__main__":
    main()
