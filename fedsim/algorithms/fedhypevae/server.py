"""FedHypeVAE server: owns Φ, applies Eq. 10, and after training fits the meta-code(s)
to the pooled DP statistics (Eq. 11, 13) to release the shared generator."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import Tensor

from fedsim.algorithms.base import ClientUpdate, SharedStateServer, apply_server_step, check_update_keys
from fedsim.algorithms.dp_stats import DPStatsRelease, pooled_statistics
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.fedhypevae.metacode import fit_meta_codes
from fedsim.algorithms.fedhypevae.synthesis import GeneratorArtifact, observation_std
from fedsim.algorithms.fedhypevae.warm_start import warm_start_model
from fedsim.algorithms.spec import FederationSpec
from fedsim.models.fedhypevae import FedHypeVAEModel, is_shared
from fedsim.models.init import seeded
from fedsim.privacy.statistics import moments_from_statistics
from fedsim.seeding import torch_generator


class FedHypeVAEServer(SharedStateServer):
    """Holds the shared hypernetwork Φ = {Φ_θ, Φ_ω}; never sees ψ_i, v_i or data."""

    def __init__(self, spec: FederationSpec, config: FedHypeVAEConfig, seed: int) -> None:
        self.spec, self.config, self.seed = spec, config, seed
        with seeded(seed, "fedhypevae-server"):
            self.model = FedHypeVAEModel(spec.dim, spec.num_classes, config)
        self.shared: dict[str, Tensor] = {
            n: p.detach() for n, p in self.model.named_parameters() if is_shared(n)
        }
        self.meta_history: list[float] = []
        self.warm_start_history: list[float] = []

    def broadcast(self) -> dict[str, Tensor]:
        """Φ, sent to every participating client."""
        return {name: value.clone() for name, value in self.shared.items()}

    def aggregate(self, updates: Sequence[ClientUpdate]) -> None:
        """Eq. 10 with weights n_i / Σ n and server learning rate η_Φ (``stats-only``: the
        updates are empty and Φ stays the warm start)."""
        if self.config.stats_only:
            for update in updates:
                check_update_keys(update, [])
            return
        apply_server_step(self.shared, updates, self.config.server_lr)

    def warm_start(self, releases: Sequence[DPStatsRelease]) -> None:
        """``stats-first``, before round 0: fit Φ to the pooled DP statistics
        (:mod:`fedsim.algorithms.fedhypevae.warm_start`; post-processing, no ε)."""
        self.warm_start_history = warm_start_model(self.model, releases, self.config,
                                                   torch_generator(self.seed, "warm-start"))

    def finalize(self, releases: Sequence[DPStatsRelease]) -> GeneratorArtifact:
        """Fit v_o (or K mixed meta-codes) to the pooled DP statistics and package the
        generator, with the observation variance of Eq. 12 when it is on.  Without the
        hypernetwork (ablation) the generator ignores every code, so there is no meta-code to
        fit: synthesis uses v = 0, as with ``meta_fit`` off."""
        statistics = pooled_statistics(releases)  # the sum only; refused below --privacy.min-cohort
        moments = moments_from_statistics(statistics)
        generator = torch_generator(self.seed, "meta-code")
        if self.config.meta_fit and self.config.hypernetwork:
            codes, weights, self.meta_history = fit_meta_codes(
                self.model, moments, self.config.meta_codes, self.config.meta_steps,
                self.config.meta_lr, self.config.meta_samples, self.config.meta_beta,
                self.config.code_radius, generator)
        else:
            codes, weights = torch.zeros(1, self.config.code_dim), torch.ones(1)
        shared_state = {name: value.clone() for name, value in self.shared.items()}
        artifact = GeneratorArtifact(shared_state, codes, weights, moments.label_distribution,
                                     self.spec.dim, self.spec.num_classes, self.config,
                                     float(statistics.counts.clamp_min(0.0).sum()))
        if not self.config.observation_variance:
            return artifact
        std = observation_std(artifact, moments, torch_generator(self.seed, "observation-variance"))
        return replace(artifact, observation_std=std)
