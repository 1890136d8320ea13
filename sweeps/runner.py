"""Run a sweep: validate, start or join Ray, build (or restore) the ``Tuner``, fit, write results.

Layout of the sweep directory ``--out`` (an absolute path is given to Tune)::

    sweep.json        what the sweep computes (grid + base options); a resume must match it
    tune/             Ray Tune's experiment state (Tuner.restore reads it)
    runs/<trial>/     each trial's fedsim run directory (config, metrics, ledger, train.log, ...)
    results.parquet   one row per trial (sweeps.collect)
    bounds.parquet    the bounds, one row per (bound, α, seed) (sweeps.bounds)
    rounds.parquet    one row per trial and round
    summary.md        Markdown summary (sweeps.report)
    plots/*.png       the plots (sweeps.plots)

Resuming: when ``tune/`` holds a restorable experiment, ``Tuner.restore(...,
resume_errored=True)`` continues it: finished trials are kept as they are, errored and
unfinished ones run again (from scratch: trials save no checkpoints).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from fedsim.errors import UserError
from sweeps.grid import Grid, trial_command, trial_name

EXPERIMENT = "tune"


def trial_dirname(trial) -> str:
    """Tune's directory name of a trial: its id and readable name."""
    return f"{trial.trial_id}-{trial_name(trial.config)}"


def trial_display_name(trial) -> str:
    """The trial's name on the console."""
    return trial_name(trial.config)


def validate_trials(options, grid: Grid, base, runs_dir: Path) -> None:
    """Validate every trial's options before anything starts (``UserError`` on the first bad one)."""
    from fedsim.commands.training_run import validate

    for point in grid.points():
        for label in grid.alphas:
            config = {"point": point, "alpha": label, "seed": grid.seeds[0]}
            validate(trial_command(base, config, runs_dir, options.backend, ray=options.ray_config()))


def resources(options, base):
    """A trial's resources: one CPU bundle (``local``), or a placement group with the
    trial's driver bundle and one bundle per client actor (``ray``; the trial's actors
    are created inside it, as Tune captures a trial's child tasks and actors)."""
    from ray import tune

    if options.backend == "local":
        return {"cpu": options.cpus_per_trial}
    client = {"CPU": options.cpus_per_client}
    if options.gpus_per_client > 0:
        client["GPU"] = options.gpus_per_client
    bundles = [{"CPU": options.cpus_per_trial}] + [dict(client) for _ in range(options.actors_per_trial())]
    return tune.PlacementGroupFactory(bundles, strategy=options.placement_strategy)


def make_trainable(options, base, runs_dir: Path):
    """``sweeps.trial.run_trial`` with its fixed arguments and resources."""
    from ray import tune

    from sweeps.trial import run_trial

    threads = max(1, int(options.cpus_per_trial)) if options.backend == "local" else 1
    trainable = tune.with_parameters(run_trial, base=base, runs_dir=str(runs_dir), backend=options.backend,
                                     threads=threads, ray=options.ray_config())
    return tune.with_resources(trainable, resources(options, base))


def start_ray(options) -> bool:
    """Join a Ray cluster or start a local one; True if this call connected (and so must shut
    down), False if Ray was already initialised.

    Order (Ray's own): --address; RAY_ADDRESS; the cluster `ray start` started on this machine
    (the head of `ray submit`); else a new local instance with --num-cpus CPUs, no dashboard."""
    import ray

    if ray.is_initialized():
        return False
    address = options.address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            try:
                ray.init(num_cpus=options.num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True)
            except ValueError as error:  # a `ray start` cluster runs here: join it as it is
                if "existing cluster" not in str(error):
                    raise
                ray.init(log_to_driver=True)
    except ConnectionError as error:
        option = "--address" if options.address else "RAY_ADDRESS"
        raise UserError(f"{option} {address}: no Ray cluster answers there ({error}).") from error
    cpus = ray.cluster_resources().get("CPU", 0)
    print(f"sweep: Ray at {ray.get_runtime_context().gcs_address} with {cpus:g} CPUs", file=sys.stderr, flush=True)
    return True


def check_resume(options, out: Path, experiment: Path, definition: dict) -> bool:
    """True when an existing sweep is to be resumed; ``UserError`` when it may not be."""
    from ray import tune

    if not tune.Tuner.can_restore(str(experiment)):
        return False
    if not options.resume:
        raise UserError(f"--out {out} already holds a sweep; drop --no-resume to continue it, "
                        "or choose another --out.")
    stored_path = out / "sweep.json"
    if stored_path.is_file():
        stored = json.loads(stored_path.read_text(encoding="utf-8"))
        if stored != json.loads(json.dumps(definition, default=str)):
            raise UserError(f"--out {out} holds a sweep with a different grid or options (see its sweep.json); "
                            "rerun it with the same options, or choose another --out.")
    return True


def fit(options, grid: Grid, base, out: Path, resume: bool):
    """Build or restore the Tuner under ``out`` and run it; return Tune's ``ResultGrid``."""
    import logging

    from ray import tune

    from sweeps.tune_progress import SweepProgress

    # Tune's TensorBoard logger warns on every ε = ∞ it logs; ∞ is a legitimate value here.
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
    trainable = make_trainable(options, base, out / "runs")
    if resume:
        tuner = tune.Tuner.restore(str(out / EXPERIMENT), trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=grid.param_space(),
            # reuse_actors: a trial's worker process (torch and fedsim imported) runs the next trial.
            tune_config=tune.TuneConfig(max_concurrent_trials=options.max_concurrent or None, reuse_actors=True,
                                        trial_name_creator=trial_display_name,
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(out), verbose=0,
                                      callbacks=[SweepProgress(grid.size(), options.progress_interval)],
                                      failure_config=tune.FailureConfig(max_failures=options.max_failures)),
        )
    return tuner.fit()


def describe(options, grid: Grid, out: Path, resume: bool) -> str:
    points = grid.points()
    lambdas = f", {len(points)} (method, ε, λ) points" if grid.swept_lambdas() or grid.epsilon_free else ""
    where = options.address or os.environ.get("RAY_ADDRESS") or "this machine's Ray"
    return (f"sweep: {grid.size()} trials — methods {', '.join(grid.methods)}; "
            f"ε {', '.join('inf' if math.isinf(e) else f'{e:g}' for e in grid.epsilons)}; "
            f"α {', '.join(grid.alphas)}; seeds {', '.join(map(str, grid.seeds))}{lambdas}; "
            f"backend {options.backend}, on {where} → {out}" + (" (resuming)" if resume else ""))


def run_sweep(options) -> int:
    """The ``run`` subcommand: 0 when every trial finished, 1 when some errored, 130 if interrupted."""
    from fedsim.io_utils import write_json_atomic
    from sweeps.bounds import bounds_frame
    from sweeps.collect import results_frames, write_frame
    from sweeps.report import write_report

    options.validate_execution()
    grid = options.grid()
    base = options.base_command()
    out = Path(options.out).expanduser().resolve()
    validate_trials(options, grid, base, out / "runs")
    definition = options.definition()
    resume = check_resume(options, out, out / EXPERIMENT, definition)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(definition, out / "sweep.json")
    print(describe(options, grid, out, resume), file=sys.stderr, flush=True)

    started = time.monotonic()
    connected = start_ray(options)
    try:
        result_grid = fit(options, grid, base, out, resume)
    finally:
        if connected:
            import ray

            ray.shutdown()
    wall = time.monotonic() - started

    results, rounds = results_frames(result_grid)
    written = [write_frame(results, out / "results.parquet")]
    if len(rounds):
        written.append(write_frame(rounds, out / "rounds.parquet"))
    try:
        bounds = bounds_frame(base, grid)
    except UserError as error:  # e.g. the data a trial could not read: the trials report it
        bounds = None
        print(f"sweep: bounds not computed ({error})", file=sys.stderr)
    if bounds is not None:
        written.append(write_frame(bounds, out / "bounds.parquet"))
    written += write_report(results, out, wall_seconds=wall, bounds=bounds)
    for path in written:
        print(f"wrote {path}")
    counts = results["status"].value_counts() if len(results) else {}
    unfinished = grid.size() - counts.get("ok", 0) - counts.get("error", 0)
    print(f"sweep: {counts.get('ok', 0)}/{grid.size()} trials finished, {counts.get('error', 0)} errored, "
          f"in {wall:.0f} s", file=sys.stderr)
    if unfinished > 0:
        print("sweep interrupted: rerun the same command to continue it.", file=sys.stderr)
        return 130
    if counts.get("error", 0):
        print(f"some trials errored (see {out / 'summary.md'}); rerun the same command to retry them.",
              file=sys.stderr)
        return 1
    return 0
