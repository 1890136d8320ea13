"""FedHypeVAE client: local DP-SGD rounds (Eq. 8–9), the statistics release and the
downstream evaluation.  Holds ψ_i, v_i, its optimizer and its accountant; none of them
ever leaves the object (only :class:`~fedsim.algorithms.base.ClientUpdate` does)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from fedsim.algorithms.base import ClientUpdate, LocalDiagnostics
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.fedhypevae.synthesis import GeneratorArtifact
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.evaluation.blend import ClientEvaluation
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_generator
from fedsim.models.fedhypevae import FedHypeVAEModel, is_shared, project_to_ball
from fedsim.models.init import seeded
from fedsim.privacy.accounting import ClientAccountant, calibrate_release_noise
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_sgd import mean_gradient, privatized_gradient
from fedsim.privacy.ledger import ClientPrivacyRecord, privacy_record
from fedsim.privacy.plan import plan_dp_sgd
from fedsim.privacy.sampling import poisson_sample
from fedsim.privacy.statistics import ClassStatistics, release_class_statistics
from fedsim.seeding import torch_generator

DIAGNOSTIC_RECORDS = 256


class FedHypeVAEClient:
    """One client of FedHypeVAE (see module docstring)."""

    def __init__(self, data, spec: FederationSpec, config: FedHypeVAEConfig, privacy: PrivacyConfig,
                 schedule: TrainingConfig, evaluation: EvaluationConfig, seed: int) -> None:
        self.client_id = data.client_id
        self.data = data
        self.config, self.privacy, self.evaluation, self.seed = config, privacy, evaluation, seed
        with seeded(seed, "fedhypevae-client", data.client_id):
            self.model = FedHypeVAEModel(spec.dim, spec.num_classes, config,
                                         generator=torch_generator(seed, "client-code", data.client_id))
        self.x = torch.as_tensor(data.x_train, dtype=torch.float32)
        self.onehot = torch.nn.functional.one_hot(
            torch.as_tensor(data.y_train, dtype=torch.long), spec.num_classes).float()
        dp_share = 1.0 - privacy.stats_epsilon_fraction
        self.plan = plan_dp_sgd(len(self.x), schedule.batch_size, schedule.rounds,
                                schedule.local_epochs, privacy, dp_share)
        self.local_epochs = schedule.local_epochs
        self.accountant = ClientAccountant(privacy.accountant, privacy.delta)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.generator = torch_generator(seed, "fedhypevae-client-steps", data.client_id)
        self.stats_noise_multiplier: float | None = None
        self.stats_clip_norm = privacy.stats_clip_norm or float(np.sqrt(spec.dim))

    # --- one round ----------------------------------------------------------------
    def local_round(self, broadcast: Mapping[str, Tensor], round_index: int) -> tuple[ClientUpdate, LocalDiagnostics]:
        shared = {n: p for n, p in self.model.named_parameters() if is_shared(n)}
        with torch.no_grad():
            for name, parameter in shared.items():
                parameter.copy_(broadcast[name])
        for _ in range(self.local_epochs * self.plan.steps_per_epoch):
            self._step()
        delta = {name: (p.detach() - broadcast[name]).clone() for name, p in shared.items()}
        update = ClientUpdate(self.client_id, delta, num_samples=len(self.x))
        return update, LocalDiagnostics(self.client_id, self._diagnostics())

    def _step(self) -> None:
        """One DP-SGD step (Eq. 9) on a Poisson batch; joint clipping in strict mode."""
        model, plan = self.model, self.plan
        batch = poisson_sample(len(self.x), plan.sample_rate, self.generator)
        records = (self.x[batch], self.onehot[batch],
                   torch.randn(len(batch), self.config.latent_dim, generator=self.generator))
        shared_inputs = (torch.randn(self.config.mmd_samples, self.config.latent_dim,
                                     generator=self.generator),)
        params = {n: p.detach() for n, p in model.named_parameters()}

        def record_loss(p, x, onehot, eps_z, mmd_noise):
            return functional_call(model, p, (x, onehot, eps_z, mmd_noise))

        if not self.privacy.private:
            gradient = mean_gradient(record_loss, params, records, shared_inputs)
        elif self.privacy.privacy_mode == "strict":
            gradient = privatized_gradient(record_loss, params, records, shared_inputs,
                                           self.privacy.clip_norm, plan.noise_multiplier,
                                           plan.expected_batch_size, self.generator)
        else:  # paper mode: Eq. 9 on Φ only; Eq. 8 (no noise, ELBO only) on ψ_i and v_i
            gradient = self._paper_mode_gradient(params, records, shared_inputs)
        if self.privacy.private:
            self.accountant.record(plan.noise_multiplier, plan.sample_rate, 1, kind="dp-sgd")

        self.optimizer.zero_grad()
        self.model.regularizer().backward()  # record-free terms, outside clipping
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.grad is None:
                    parameter.grad = torch.zeros_like(parameter)
                parameter.grad.add_(gradient[name])
        self.optimizer.step()
        with torch.no_grad():
            model.client_code.copy_(project_to_ball(model.client_code, self.config.code_radius))

    def _paper_mode_gradient(self, params, records, shared_inputs) -> dict[str, Tensor]:
        model = self.model
        shared = {n: p for n, p in params.items() if is_shared(n)}
        local = {n: p for n, p in params.items() if not is_shared(n)}

        def shared_loss(p, x, onehot, eps_z, mmd_noise):
            return functional_call(model, {**local, **p}, (x, onehot, eps_z, mmd_noise))

        def local_elbo(p, x, onehot, eps_z, mmd_noise):
            return functional_call(model, {**shared, **p}, (x, onehot, eps_z, mmd_noise))

        gradient = privatized_gradient(shared_loss, shared, records, shared_inputs,
                                       self.privacy.clip_norm, self.plan.noise_multiplier,
                                       self.plan.expected_batch_size, self.generator)
        with _without_mmd(model):
            gradient.update(mean_gradient(local_elbo, local, records, shared_inputs))
        return gradient

    @torch.no_grad()
    def _diagnostics(self) -> dict[str, float]:
        """Simulator-side loss on a fixed subset of train records (never released)."""
        count = min(DIAGNOSTIC_RECORDS, len(self.x))
        generator = torch_generator(self.seed, "diagnostics", self.client_id)
        x, onehot = self.x[:count], self.onehot[:count]
        eps = torch.randn(count, self.config.latent_dim, generator=generator)
        noise = torch.randn(self.config.mmd_samples, self.config.latent_dim, generator=generator)
        terms = torch.func.vmap(self.model.record_terms, in_dims=(0, 0, 0, None))(x, onehot, eps, noise)
        return {name: float(value.mean()) for name, value in terms.items()}

    # --- after training -----------------------------------------------------------
    def release(self) -> ClassStatistics:
        """DP class statistics (Gaussian mechanism, q = 1), recorded in the accountant so
        that the ledger's ε composes DP-SGD and this release."""
        if self.privacy.private:
            sigma = calibrate_release_noise(self.accountant.history, self.privacy.epsilon,
                                            self.privacy.delta, self.privacy.accountant)
            self.stats_noise_multiplier = sigma
        else:
            sigma = 0.0
        stats = release_class_statistics(self.x, torch.as_tensor(self.data.y_train, dtype=torch.long),
                                         self.onehot.shape[1], self.stats_clip_norm, sigma,
                                         self.privacy.covariance,
                                         torch_generator(self.seed, "statistics", self.client_id))
        if self.privacy.private:
            self.accountant.record(sigma, 1.0, 1, kind="release")
        return stats

    def evaluate(self, artifact: GeneratorArtifact) -> ClientEvaluation:
        """Reference protocol: local classifier on real train data blended with one trained
        on synthetic data sampled from the shared generator."""
        return evaluate_generator(self.data, artifact, self.evaluation, self.seed)

    def privacy_record(self) -> ClientPrivacyRecord:
        return privacy_record(self.client_id, self.privacy, self.plan, self.accountant,
                              self.stats_noise_multiplier, self.stats_clip_norm)

    # --- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "accountant": self.accountant.state_dict(),
                "generator": self.generator.get_state(),
                "stats_noise_multiplier": self.stats_noise_multiplier}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.accountant = ClientAccountant.from_state_dict(state["accountant"])
        self.generator.set_state(state["generator"])
        self.stats_noise_multiplier = state["stats_noise_multiplier"]


class _without_mmd:
    """Temporarily evaluate the model's ELBO only (Eq. 8 updates ψ_i, v_i on −ELBO)."""

    def __init__(self, model: FedHypeVAEModel) -> None:
        self.model = model

    def __enter__(self):
        self.saved = self.model.config
        from dataclasses import replace
        self.model.config = replace(self.saved, lambda_mmd=0.0)

    def __exit__(self, *exc):
        self.model.config = self.saved
