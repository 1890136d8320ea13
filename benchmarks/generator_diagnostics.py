"""Diagnostics: does FedHypeVAE's generator learn, and does its synthetic set help?

Runs FedHypeVAE (local backend, one seed) on the built-in synthetic dataset for each
``--epsilons`` value and prints one Markdown row per run:

- q, steps and σ of DP-SGD and σ of the statistics release (medians over clients; σ is
  the value charged to the accountant) and the number of shared+local parameters,
- reconstruction MSE (mean over clients) in the first and the last round,
- test balanced accuracy (mean over clients) of the local probe alone (λ = 1), of the
  probe trained on the synthetic set alone (λ = 0), and of the blend at the λ chosen on
  validation (``global`` rule, the reference protocol),
- the same blend when the synthetic set is only the released class means (each class's
  records replaced by its mean from the pooled DP statistics): what the statistics
  release carries on its own, a reference for the generator,
- the spread of the synthetic set: mean per-feature within-class std of synthetic
  samples divided by that of the real train data (1 = as spread out as the data).

Not a timed test: it answers "why are the generative rows of the table where they
are".  One run takes 1–4 minutes on 2 cores.

    python benchmarks/generator_diagnostics.py --epsilons inf 8 1 [--rounds 30]
        [--samples 8000] [--lr 0.001] [--hidden 128] [--threads 1] [--clip-only]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np
import torch

from fedsim.algorithms.fedhypevae import FedHypeVAEConfig, make_server
from fedsim.algorithms.registry import RunSettings
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.federation import DataConfig, load_federation
from fedsim.data.synthetic import SyntheticConfig
from fedsim.evaluation.blend import select_lambdas
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_with_synthetic
from fedsim.models.fedhypevae import FedHypeVAEModel
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.statistics import moments_from_statistics, pooled
from fedsim.seeding import torch_generator
from fedsim.simulation import LocalClientPool, run_federation


def synthetic_spread(federation, artifact, per_class: int = 200) -> float:
    """Mean within-class std of synthetic samples over that of the real train data."""
    x = np.concatenate([c.x_train for c in federation.clients])
    y = np.concatenate([c.y_train for c in federation.clients])
    labels = np.repeat(np.arange(federation.num_classes), per_class)
    synthetic = artifact.sample(labels, torch_generator(0, "diagnostics"))
    ratios = [synthetic[labels == c].std(axis=0).mean() / x[y == c].std(axis=0).mean()
              for c in range(federation.num_classes) if (y == c).sum() > 1]
    return float(np.mean(ratios))


def blend_bacc(evaluations) -> dict:
    """Mean test BACC over clients of the local probe alone (λ = 1), the synthetic-data
    probe alone (λ = 0) and the blend at the λ chosen on validation (``global`` rule)."""
    lambdas = evaluations[0].lambdas
    chosen = select_lambdas(evaluations, "global")
    return {"local": np.mean([e.test["bacc"][lambdas.index(1.0)] for e in evaluations]),
            "synthetic": np.mean([e.test["bacc"][lambdas.index(0.0)] for e in evaluations]),
            "chosen": np.mean([e.test["bacc"][i] for e, i in zip(evaluations, chosen)]),
            "lambda": lambdas[chosen[0]]}


def class_means_only(federation, moments, seed: int) -> dict:
    """Test BACC (mean over clients) of the protocol when each client's synthetic set is
    the released class mean repeated for each of its train labels (classes whose noisy
    count is too small to be valid are left out, as the meta-code fit leaves them out)."""
    means, valid = moments.means.numpy(), moments.valid.numpy()
    evaluations = []
    for data in federation.clients:
        labels = np.sort(data.y_train.astype(np.int64))
        labels = labels[valid[labels]]
        evaluations.append(evaluate_with_synthetic(data, means[labels].astype(np.float32), labels,
                                                   EvaluationConfig().probe, seed))
    return blend_bacc(evaluations)


def remove_noise(client) -> None:
    """``--clip-only``: clip at C but add no noise (NOT private).  The accountant is still
    charged with the calibrated σ so that the statistics release keeps its share of ε;
    this only isolates what the noise costs from what clipping costs."""
    state = client.privacy_state
    calibrated = state.plan.noise_multiplier
    state.plan = replace(state.plan, noise_multiplier=0.0)
    record = state.accountant.record

    def charge_calibrated(sigma, sample_rate, steps, kind):
        return record(calibrated if kind == "dp-sgd" else sigma, sample_rate, steps, kind=kind)

    state.accountant.record = charge_calibrated


def data_config(args: argparse.Namespace) -> DataConfig:
    """The default federation of the main job, on ``--samples`` synthetic records."""
    return DataConfig(synthetic=SyntheticConfig(n_samples=args.samples))


def diagnose(epsilon: float, args: argparse.Namespace) -> dict:
    federation = load_federation(data_config(args), args.seed)
    spec = FederationSpec(federation.num_clients, federation.num_classes, federation.dim)
    config = FedHypeVAEConfig(lr=args.lr, hidden_dim=args.hidden)
    settings = RunSettings("fedhypevae", config, PrivacyConfig(epsilon=epsilon),
                           TrainingConfig(rounds=args.rounds), EvaluationConfig(), args.seed)
    pool = LocalClientPool(federation, spec, settings)
    if args.clip_only:
        for client in pool.clients.values():
            remove_noise(client)
    server = make_server(spec, settings)
    finalize, released = server.finalize, []

    def keep_releases(releases):
        released.extend(releases)
        return finalize(releases)

    server.finalize = keep_releases
    result = run_federation(server, pool, settings)
    moments = moments_from_statistics(pooled(released))
    records = result.privacy_records
    return {
        "epsilon": epsilon,
        "sigma": float(np.median([r.history[0][0] if r.history else 0.0 for r in records])),
        "sigma_stats": float(np.median([r.stats_noise_multiplier or 0.0 for r in records])),
        "steps": float(np.median([r.steps for r in records])),
        "q": float(np.median([r.sample_rate for r in records])),
        "train_records": float(np.median([len(c.y_train) for c in federation.clients])),
        "parameters": sum(p.numel() for p in FedHypeVAEModel(spec.dim, spec.num_classes, config).parameters()),
        "reconstruction": (result.round_metrics[0]["reconstruction"], result.round_metrics[-1]["reconstruction"]),
        **blend_bacc(result.evaluations),
        "means_only": class_means_only(federation, moments, args.seed),
        "spread": synthetic_spread(federation, result.artifact),
        "seconds": result.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[math.inf, 8.0, 1.0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--samples", type=int, default=8000, help="records of the synthetic dataset")
    parser.add_argument("--lr", type=float, default=FedHypeVAEConfig.lr)
    parser.add_argument("--hidden", type=int, default=FedHypeVAEConfig.hidden_dim)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clip-only", action="store_true",
                        help="clip at C but add no noise (NOT private: isolates the cost of the noise)")
    args = parser.parse_args()
    if args.clip_only and math.inf in args.epsilons:
        parser.error("--clip-only needs finite --epsilons (at ε = inf nothing is clipped)")
    torch.set_num_threads(args.threads)
    data = data_config(args)
    print(f"FedHypeVAE, synthetic dataset ({args.samples} records, {data.num_clients} clients, "
          f"{data.partition} α = {data.alpha}), {args.rounds} rounds, lr {args.lr}, hidden {args.hidden}, seed {args.seed}"
          + (", CLIP ONLY (no noise, not private)" if args.clip_only else ""))
    print("Medians over clients: train records, q, steps, σ (DP-SGD, as charged), σ of the statistics release.")
    print("| target ε | train records | q | steps | σ | σ stats | parameters | reconstruction first → last "
          "| BACC local only | BACC synthetic only | BACC chosen (λ) | class means only: synthetic only "
          "| class means only: chosen (λ) | synthetic spread | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for epsilon in args.epsilons:
        row = diagnose(epsilon, args)
        first, last = row["reconstruction"]
        print(f"| {row['epsilon']:g} | {row['train_records']:.0f} | {row['q']:.3f} | {row['steps']:.0f} "
              f"| {row['sigma']:.2f} | {row['sigma_stats']:.2f} | {row['parameters']:,} | {first:.3f} → {last:.3f} | {100 * row['local']:.1f} "
              f"| {100 * row['synthetic']:.1f} | {100 * row['chosen']:.1f} ({row['lambda']:g}) "
              f"| {100 * row['means_only']['synthetic']:.1f} | {100 * row['means_only']['chosen']:.1f} "
              f"({row['means_only']['lambda']:g}) | {row['spread']:.3f} | {row['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
