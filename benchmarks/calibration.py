"""Benchmark: privacy calibration of a whole federation, cold and warm cache.

Every client of a DP-CVAE run (batch 256, 2 rounds × 5 local epochs, default privacy:
ε = 1, δ = 1e-4, 10 % of ε for the label counts) calibrates its DP-SGD σ
(:func:`fedsim.privacy.plan.plan_dp_sgd`) and then the label-count release noise that
composes with it (:func:`fedsim.privacy.calibration.calibrate_release_noise`), as
``GenerativeClient`` does.  Client sizes: 10 clients = the train sizes of the built-in
synthetic dataset's default federation (seed 0, all distinct); other counts = the
distinct sizes ``40 + ⌊3000·i/N⌋``.

*cold*: an empty temporary cache directory and empty memory; *warm*: memory cleared,
the cache file written by the cold pass read back (a new run).  Prints a Markdown table.

    python benchmarks/calibration.py [--clients 10 1000] [--accountants rdp prv]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

from fedsim.privacy import calibration
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.plan import plan_dp_sgd

BATCH_SIZE, ROUNDS, LOCAL_EPOCHS = 256, 2, 5


def client_sizes(clients: int) -> list[int]:
    if clients == 10:
        from fedsim.data.federation import DataConfig, load_federation

        return [client.n_train for client in load_federation(DataConfig(), 0).clients]
    return [40 + (3000 * i) // clients for i in range(clients)]


def calibrate_federation(sizes: list[int], privacy: PrivacyConfig) -> set:
    """Plan and release noise of every client; returns the distinct plans."""
    plans = set()
    for size in sizes:
        plan = plan_dp_sgd(size, BATCH_SIZE, ROUNDS, LOCAL_EPOCHS, privacy, 1.0 - privacy.stats_epsilon_fraction)
        calibration.calibrate_release_noise([(plan.noise_multiplier, plan.sample_rate, plan.total_steps)],
                                            privacy.epsilon, privacy.delta, privacy.accountant)
        plans.add((plan.sample_rate, plan.total_steps))
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--accountants", nargs="+", default=["rdp", "prv"], choices=["rdp", "prv"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for accountant in args.accountants:
        privacy = PrivacyConfig(accountant=accountant)
        for clients in args.clients:
            sizes = client_sizes(clients)
            with tempfile.TemporaryDirectory() as cache_dir:
                os.environ["FEDSIM_CACHE_DIR"] = cache_dir
                calibration.clear_memory_cache()
                before = calibration.evaluations
                start = time.perf_counter()
                plans = calibrate_federation(sizes, privacy)
                cold = time.perf_counter() - start
                cold_evaluations = calibration.evaluations - before
                calibration.clear_memory_cache()
                before = calibration.evaluations
                start = time.perf_counter()
                calibrate_federation(sizes, privacy)
                warm = time.perf_counter() - start
                warm_evaluations = calibration.evaluations - before
            rows.append((accountant, clients, len(plans), cold, cold_evaluations, warm, warm_evaluations))
            print(f"done: {accountant} {clients} clients", flush=True)
    print("| accountant | clients | distinct plans | cold s | cold evaluations | warm s | warm evaluations |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for accountant, clients, plans, cold, cold_ev, warm, warm_ev in rows:
        print(f"| {accountant} | {clients} | {plans} | {cold:.2f} | {cold_ev} | {warm:.4f} | {warm_ev} |")


if __name__ == "__main__":
    main()
