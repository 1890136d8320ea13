"""Benchmark: one local epoch of FedHypeVAE with DP-SGD vs the same epoch without DP.

2,000 records of dimension 384 (as DINOv2 ViT-S/14), 11 classes, batch 64, default
FedHypeVAE model, the public bound ``--privacy.max-records`` set to the client's records
(so every variant runs the same number of steps).  Rows: DP-SGD over the whole model
(``--fedhypevae.training dp-sgd``, strict and paper mode) and the statistics-first
variant's small DP footprint (client code + the hypernetwork's output head).  Each variant runs ``--repeats`` epochs after one warm-up epoch; the
script prints the median seconds per epoch and the DP/no-DP ratio.  Machines are noisy:
compare the ratio, measured in one run.

    python benchmarks/dp_step.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from fedsim.algorithms.fedhypevae import FedHypeVAEClient, FedHypeVAEConfig
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.federation import ClientData
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig


def make_client(epsilon: float, mode: str, records: int, dim: int, classes: int,
                config: FedHypeVAEConfig) -> FedHypeVAEClient:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((records, dim)).astype(np.float32)
    y = rng.integers(0, classes, records).astype(np.int64)
    empty_x, empty_y = x[:0], y[:0]
    data = ClientData(client_id=0, x_train=x, y_train=y, x_val=empty_x, y_val=empty_y,
                      x_test=empty_x, y_test=empty_y, num_classes=classes, site=None)
    spec = FederationSpec(1, classes, dim)
    return FedHypeVAEClient(data, spec, config,
                            PrivacyConfig(epsilon=epsilon, privacy_mode=mode, max_records=records),
                            TrainingConfig(rounds=10, local_epochs=1, batch_size=64),
                            EvaluationConfig(), seed=0)


def time_epochs(client: FedHypeVAEClient, repeats: int) -> list[float]:
    broadcast = {n: p.detach().clone() for n, p in client.model.named_parameters()
                 if n.startswith(("decoder.", "prior."))}
    client.local_round(broadcast, 0)  # warm-up
    times = []
    for round_index in range(repeats):
        started = time.perf_counter()
        client.local_round(broadcast, round_index + 1)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full = FedHypeVAEConfig(training="dp-sgd")  # DP-SGD over the whole model (the paper's training)
    footprint = FedHypeVAEConfig(training="stats-first", statistics_share=0.5)  # DP-SGD on codes + head only
    variants = [("no DP (ε = ∞), whole model", float("inf"), "strict", full),
                ("DP-SGD strict (joint clipping), whole model", 1.0, "strict", full),
                ("DP-SGD paper mode (Φ only)", 1.0, "paper", full),
                ("DP-SGD stats-first footprint (codes + head), share 0.5", 1.0, "strict", footprint)]
    results = {}
    for name, epsilon, mode, config in variants:
        client = make_client(epsilon, mode, args.records, args.dim, 11, config)
        results[name] = statistics.median(time_epochs(client, args.repeats))
    baseline = results[variants[0][0]]
    print(f"one local epoch, {args.records} records × {args.dim}-d, batch 64, "
          f"{args.threads} threads, median of {args.repeats}")
    print("| variant | s / epoch | ratio to no DP |")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.2f} |")


if __name__ == "__main__":
    main()
