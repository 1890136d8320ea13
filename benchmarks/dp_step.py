"""Benchmark: one local epoch of FedHypeVAE with DP-SGD vs the same epoch without DP.

2,000 records of dimension 384 (as DINOv2 ViT-S/14), 11 classes, batch 64, default
FedHypeVAE model, the public bound ``--privacy.max-records`` set to the client's records
(so every variant runs the same number of steps).  Rows: DP-SGD over the whole model
(``--fedhypevae.training dp-sgd``, strict and paper mode; clipped sums by ghost clipping,
as runs compute them, and — the row before it — by materialised per-record gradients,
``torch.func.vmap(grad)``, the same sums) and the statistics-first variant's small DP
footprint (client code + the hypernetwork's output head).  Each variant runs
``--repeats`` epochs after one warm-up epoch; the script prints the median seconds per
epoch and the DP/no-DP ratio, against the ε = ∞ epoch as runs compute it (the mean
gradient by ``torch.func``) and against the same epoch on the batched losses with one plain
backward pass (a faster non-private epoch than the one runs take: the stricter ratio).
Machines are noisy: compare the ratio, measured in one run.
``--breakdown`` also prints where the whole-model strict DP epoch goes (the ghost clipped
sum, Gaussian noise, the rest), timed by wrapping those functions.

    python benchmarks/dp_step.py [--repeats 5] [--threads 2] [--breakdown]
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
from fedsim.privacy.clipped_sums import GhostClippedSum, VmapClippedSum
from fedsim.privacy.config import PrivacyConfig


def make_client(epsilon: float, mode: str, records: int, dim: int, classes: int,
                config: FedHypeVAEConfig, strategy: str = "as run") -> FedHypeVAEClient:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((records, dim)).astype(np.float32)
    y = rng.integers(0, classes, records).astype(np.int64)
    empty_x, empty_y = x[:0], y[:0]
    data = ClientData(client_id=0, x_train=x, y_train=y, x_val=empty_x, y_val=empty_y,
                      x_test=empty_x, y_test=empty_y, num_classes=classes, site=None)
    spec = FederationSpec(1, classes, dim)
    client = FedHypeVAEClient(data, spec, config,
                              PrivacyConfig(epsilon=epsilon, privacy_mode=mode, max_records=records),
                              TrainingConfig(rounds=10, local_epochs=1, batch_size=64),
                              EvaluationConfig(), seed=0)
    if strategy == "vmap":  # the clipped sums before ghost clipping, for the same-run comparison
        assert client.trainer is not None and mode == "strict"
        client.trainer.clipped_sum = VmapClippedSum(client._record_loss())
    elif strategy == "batched":  # ε = ∞ on the batched losses: one plain backward of their mean
        assert client.trainer is not None and epsilon == float("inf")
        client.trainer.clipped_sum = GhostClippedSum(client.model, client.model.batch_losses)
    return client


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


def breakdown(client: FedHypeVAEClient, repeats: int) -> dict[str, float]:
    """Seconds per epoch in each phase of ``client``'s DP step (medians over ``repeats``)."""
    import fedsim.privacy.clipped_sums as clipped_sums
    import fedsim.privacy.dp_trainer as dp_trainer

    spent: dict[str, float] = {}
    phases = {"ghost clipped sum (forward, one backward, norms, book-kept sum)": (clipped_sums, "linear_clipped_sum"),
              "noise + division": (dp_trainer, "noisy_average")}
    originals = {name: getattr(module, attribute) for name, (module, attribute) in phases.items()}

    def timed(name: str):
        def call(*args, **kwargs):
            started = time.perf_counter()
            result = originals[name](*args, **kwargs)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
            return result
        return call

    for name, (module, attribute) in phases.items():
        setattr(module, attribute, timed(name))
    try:
        per_epoch: dict[str, list[float]] = {name: [] for name in [*phases, "rest", "epoch"]}
        broadcast = {n: p.detach().clone() for n, p in client.model.named_parameters()
                     if n.startswith(("decoder.", "prior."))}
        client.local_round(broadcast, 0)  # warm-up
        for round_index in range(repeats):
            spent.clear()
            started = time.perf_counter()
            client.local_round(broadcast, round_index + 1)
            epoch = time.perf_counter() - started
            for name in phases:
                per_epoch[name].append(spent.get(name, 0.0))
            per_epoch["rest"].append(epoch - sum(spent.values()))
            per_epoch["epoch"].append(epoch)
    finally:
        for name, (module, attribute) in phases.items():
            setattr(module, attribute, originals[name])
    return {name: statistics.median(values) for name, values in per_epoch.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the phases of the whole-model strict DP epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full = FedHypeVAEConfig(training="dp-sgd")  # DP-SGD over the whole model (the paper's training)
    footprint = FedHypeVAEConfig(training="stats-first", statistics_share=0.5)  # DP-SGD on codes + head only
    variants = [("no DP (ε = ∞), whole model", float("inf"), "strict", full, "as run"),
                ("no DP, whole model, batched losses (one plain backward; not what ε = ∞ runs)",
                 float("inf"), "strict", full, "batched"),
                ("DP-SGD strict, whole model, per-record gradients (vmap)", 1.0, "strict", full, "vmap"),
                ("DP-SGD strict (joint clipping), whole model, ghost clipping", 1.0, "strict", full, "as run"),
                ("DP-SGD paper mode (Φ only), ghost clipping", 1.0, "paper", full, "as run"),
                ("DP-SGD stats-first footprint (codes + head), share 0.5", 1.0, "strict", footprint, "as run")]
    results = {}
    for name, epsilon, mode, config, strategy in variants:
        client = make_client(epsilon, mode, args.records, args.dim, 11, config, strategy)
        results[name] = statistics.median(time_epochs(client, args.repeats))
    baseline, batched = results[variants[0][0]], results[variants[1][0]]
    print(f"one local epoch, {args.records} records × {args.dim}-d, batch 64, "
          f"{args.threads} threads, median of {args.repeats}")
    print("| variant | s / epoch | ratio to no DP | ratio to batched no DP |")
    print("|---|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.2f} | {seconds / batched:.2f} |")
    if args.breakdown:
        phases = breakdown(make_client(1.0, "strict", args.records, args.dim, 11, full), args.repeats)
        print("\nwhole-model strict DP epoch, by phase (median of", args.repeats, "epochs)")
        print("| phase | s / epoch | share |")
        print("|---|---|---|")
        for name, seconds in phases.items():
            print(f"| {name} | {seconds:.3f} | {seconds / phases['epoch']:.0%} |")


if __name__ == "__main__":
    main()
