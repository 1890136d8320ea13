"""Statistics-first warm start of Φ (``--fedhypevae.training stats-first``).

Before round 0 every client releases its DP class statistics once
(:meth:`~fedsim.algorithms.fedhypevae.client.FedHypeVAEClient.release_once`).  The server
pools them into the class-conditional Gaussians of ``dp-stats``
(:func:`fedsim.algorithms.dp_stats.class_generator`: same pooling, validity threshold and
variance floor) and fits the whole CVAE — encoder, hypernetwork h_θ and base decoder,
prior nets h_ω, g_ω — on records sampled from them, with the objective of Eq. 5 (ELBO,
MMD of Eq. 6, λ_Lip; the code is held at v = 0, where the clients' codes and the meta-code
fit start).  It reads nothing but the releases and seeded noise, so it is
post-processing: no ε.  The Gaussians are fitted exactly when the CVAE can represent
them, so the generator starts where ``dp-stats`` ends.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fedsim.algorithms.dp_stats import DPStatsConfig, DPStatsRelease, class_generator
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.models.fedhypevae import FedHypeVAEModel


def warm_start_model(model: FedHypeVAEModel, releases: Sequence[DPStatsRelease], config: FedHypeVAEConfig,
                     generator: torch.Generator) -> list[float]:
    """Fit ``model`` in place to the pooled DP Gaussians (module docstring); return the
    loss history.  Nothing happens when no class has a trustworthy count."""
    gaussians = class_generator(releases, DPStatsConfig(covariance=releases[0].statistics.covariance))
    if not bool(gaussians.valid.any()):
        return []
    with torch.no_grad():
        model.client_code.zero_()
    model.client_code.requires_grad_(False)
    trained = [p for name, p in model.named_parameters() if name != "client_code"]
    optimizer = torch.optim.Adam(trained, lr=config.warm_start_lr)
    batched_loss = torch.func.vmap(model.record_loss, in_dims=(0, 0, 0, None))
    history = []
    for _ in range(config.warm_start_steps):
        labels = torch.as_tensor(gaussians.sample_labels(config.warm_start_batch, generator))
        x = torch.as_tensor(gaussians.sample(labels, generator))
        onehot = torch.nn.functional.one_hot(labels, model.num_classes).float()
        eps_z = torch.randn(len(labels), config.latent_dim, generator=generator)
        mmd_noise = torch.randn(config.mmd_samples, config.latent_dim, generator=generator)
        loss = batched_loss(x, onehot, eps_z, mmd_noise).mean() + model.regularizer()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    model.client_code.requires_grad_(True)
    return history
