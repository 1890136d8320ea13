"""Benchmark: privacy calibration of a whole federation, cold and warm cache.

Every client of a DP-CVAE run (batch 256, 2 rounds × 5 local epochs, one reserved round,
default privacy: ε = 1, δ = 1e-4, 10 % of ε for the label counts) calibrates its DP-SGD σ
(:func:`fedsim.privacy.plan.plan_dp_sgd`) and then the label-count release noise that
composes with it (:func:`fedsim.privacy.calibration.calibrate_release_noise`), as
``GenerativeClient`` does.

A plan is fixed by the public record bound it is made for (``--privacy.max-records``):
q = 256/bound, T = 3 rounds × 5 epochs × ⌈bound/256⌉.  Scenarios:

* ``distinct``: every client has a bound of its own (as if each site published its own
  cap), ``40 + ⌊3000·i/P⌋`` for the i-th of P = min(clients, 10) bounds, client j taking
  bound j mod P — 10 distinct plans (q from 1 to 0.09, T from 15 to 165);
* ``shared``: the default, one bound (2048) for every client — one plan.

*cold*: an empty temporary cache directory and empty memory; *warm*: memory cleared,
the cache file written by the cold pass read back (a new run).  Wall and CPU seconds of
the process (on a shared machine the wall time includes waiting for a core).  "exact" counts
evaluations of Opacus' ε, "estimates" the PRV search's cheap estimates.  Prints a
Markdown table.

    python benchmarks/calibration.py [--clients 10 1000] [--accountants rdp prv]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
import warnings

from fedsim.privacy import calibration
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.plan import plan_dp_sgd

BATCH_SIZE, ROUNDS, LOCAL_EPOCHS = 256, 2, 5
DISTINCT_PLANS = 10


def client_bounds(clients: int, scenario: str) -> list[int]:
    """The public record bound of each client (module docstring)."""
    if scenario == "shared":
        return [PrivacyConfig().max_records] * clients
    plans = min(clients, DISTINCT_PLANS)
    bounds = [40 + (3000 * i) // plans for i in range(plans)]
    return [bounds[j % plans] for j in range(clients)]


def calibrate_federation(bounds: list[int], privacy: PrivacyConfig) -> set[tuple[float, int]]:
    """Plan and release noise of every client; returns the distinct plans (q, T)."""
    plans = set()
    for bound in bounds:
        client_privacy = dataclasses.replace(privacy, max_records=bound)
        plan = plan_dp_sgd(bound, BATCH_SIZE, ROUNDS, LOCAL_EPOCHS, client_privacy,
                           1.0 - privacy.stats_epsilon_fraction)
        calibration.calibrate_release_noise([(plan.noise_multiplier, plan.sample_rate, plan.total_steps)],
                                            privacy.epsilon, privacy.delta, privacy.accountant)
        plans.add((plan.sample_rate, plan.total_steps))
    return plans


def timed(bounds: list[int], privacy: PrivacyConfig) -> tuple[set[tuple[float, int]], float, float, int, int]:
    """Plans, wall seconds, CPU seconds, exact evaluations and estimates of one pass."""
    exact, estimates = calibration.evaluations, calibration.estimate_evaluations
    start, start_cpu = time.perf_counter(), time.process_time()
    plans = calibrate_federation(bounds, privacy)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return plans, seconds, cpu, calibration.evaluations - exact, calibration.estimate_evaluations - estimates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--accountants", nargs="+", default=["rdp", "prv"], choices=["rdp", "prv"])
    parser.add_argument("--scenarios", nargs="+", default=["distinct", "shared"], choices=["distinct", "shared"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for accountant in args.accountants:
        privacy = PrivacyConfig(accountant=accountant)
        for scenario in args.scenarios:
            for clients in args.clients:
                bounds = client_bounds(clients, scenario)
                with tempfile.TemporaryDirectory() as cache_dir:
                    os.environ["FEDSIM_CACHE_DIR"] = cache_dir
                    calibration.clear_memory_cache()
                    plans, cold, cold_cpu, cold_exact, cold_estimates = timed(bounds, privacy)
                    calibration.clear_memory_cache()  # a new run: only the file is left
                    _, warm, _, warm_exact, warm_estimates = timed(bounds, privacy)
                rows.append((accountant, scenario, clients, len(plans), cold, cold_cpu, cold_exact, cold_estimates,
                             warm, warm_exact + warm_estimates))
                print(f"done: {accountant} {scenario} {clients} clients", flush=True)
    print("| accountant | bounds | clients | distinct plans | cold s | cold CPU s | cold exact | cold estimates "
          "| warm s | warm evaluations |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for accountant, scenario, clients, plans, cold, cold_cpu, exact, estimates, warm, warm_evaluations in rows:
        print(f"| {accountant} | {scenario} | {clients} | {plans} | {cold:.2f} | {cold_cpu:.2f} | {exact} "
              f"| {estimates} | {warm:.4f} | {warm_evaluations} |")


if __name__ == "__main__":
    main()
