"""Benchmark: one DP-SGD clipped sum, ghost clipping (second backward pass, and
book-keeping) vs per-sample gradients (torch.func vmap), and a plain (non-private) backward.

Models at the reference architectures on 384-d embeddings (DINOv2 ViT-S/14), 11
classes, batch 256: the DP-CGAN discriminator (395 → 1024 → 512 → 1), the DP-CVAE
(encoder and decoder 3 × 256, latent 100), the FedAvg linear classifier, and the whole
default FedHypeVAE model (encoder, client code, hypernetwork, row-scaled decoder, prior;
its batched losses with one copy of v_i per record and 4 MMD samples per record).  Each
variant runs ``--repeats`` times after one warm-up; the script prints the median
seconds and the ratios.  Compare ratios from one run (the machine is shared).

    python benchmarks/ghost_clipping.py [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call

from fedsim.algorithms.dp_cgan import DPCGANClient, DPCGANConfig
from fedsim.algorithms.dp_cvae import DPCVAEClient, DPCVAEConfig
from fedsim.algorithms.fedhypevae import FedHypeVAEConfig
from fedsim.algorithms.spec import FederationSpec
from fedsim.models.fedhypevae import FedHypeVAEModel
from fedsim.privacy.dp_sgd import clipped_sum, per_sample_gradients
from fedsim.privacy.ghost_clipping import linear_clipped_sum

DIM, CLASSES, BATCH, CLIP = 384, 11, 256, 1.5


def cases():
    spec = FederationSpec(1, CLASSES, DIM)
    u = torch.randn(BATCH, DIM)
    onehot = nn.functional.one_hot(torch.randint(0, CLASSES, (BATCH,)), CLASSES).float()
    gan = DPCGANClient.build_model(spec, DPCGANConfig())
    cvae = DPCVAEClient.build_model(spec, DPCVAEConfig())
    eps = torch.randn(BATCH, DPCVAEConfig().latent_dim)
    linear = nn.Linear(DIM, CLASSES)
    y = torch.randint(0, CLASSES, (BATCH,))
    yield ("DP-CGAN discriminator", gan, {n: p for n, p in gan.named_parameters() if n.startswith("discriminator.")},
           lambda: gan(u, onehot), lambda p, uj, oj: functional_call(gan, p, (uj, oj)), (u, onehot), ())
    yield ("DP-CVAE", cvae, dict(cvae.named_parameters()), lambda: cvae(u, onehot, eps),
           lambda p, uj, oj, ej: functional_call(cvae, p, (uj, oj, ej)), (u, onehot, eps), ())
    yield ("FedAvg linear", linear, dict(linear.named_parameters()),
           lambda: nn.functional.cross_entropy(linear(u), y, reduction="none"),
           lambda p, uj, yj: nn.functional.cross_entropy(functional_call(linear, p, (uj,))[None], yj[None]), (u, y),
           ())
    config = FedHypeVAEConfig()
    fedhypevae = FedHypeVAEModel(DIM, CLASSES, config)
    eps_z, mmd_noise = torch.randn(BATCH, config.latent_dim), torch.randn(config.mmd_samples, config.latent_dim)
    yield ("FedHypeVAE (whole model)", fedhypevae, dict(fedhypevae.named_parameters()),
           lambda: fedhypevae.batch_losses(u, onehot, eps_z, mmd_noise),
           lambda p, uj, oj, ej, noise: functional_call(fedhypevae, p, (uj, oj, ej, noise)), (u, onehot, eps_z),
           (mmd_noise,))


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {BATCH}, {DIM}-d, {args.threads} thread(s), median of {args.repeats}")
    print("| model | parameters | plain backward s | vmap per-sample s | ghost s | ghost book-keeping s "
          "| vmap / ghost | ghost / plain | book-keeping / plain |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, model, params, batch_losses, record_loss, records, shared in cases():
        detached = {n: p.detach() for n, p in params.items()}

        def losses_only(batch_losses=batch_losses):
            result = batch_losses()
            return result[0] if isinstance(result, tuple) else result

        plain = median_seconds(lambda: torch.autograd.grad(losses_only().mean(), list(params.values()),
                                                           allow_unused=True), args.repeats)
        vmap = median_seconds(lambda: clipped_sum(per_sample_gradients(record_loss, detached, records, shared), CLIP),
                              args.repeats)
        ghost = median_seconds(lambda: linear_clipped_sum(model, params, batch_losses, CLIP), args.repeats)
        kept = median_seconds(lambda: linear_clipped_sum(model, params, batch_losses, CLIP, bookkeeping=True),
                              args.repeats)
        count = sum(p.numel() for p in params.values())
        print(f"| {name} | {count:,} | {plain:.4f} | {vmap:.4f} | {ghost:.4f} | {kept:.4f} | {vmap / ghost:.1f}× "
              f"| {ghost / plain:.1f}× | {kept / plain:.1f}× |")


if __name__ == "__main__":
    main()
