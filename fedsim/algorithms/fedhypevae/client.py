"""FedHypeVAE client: local DP-SGD rounds (Eq. 8–9, through
:class:`~fedsim.privacy.dp_trainer.DPTrainer`; the whole-model objective's clipped sums by
ghost clipping, the small footprint's by per-record gradients from ``torch.func``),
the statistics release and the downstream evaluation.  Holds ψ_i, v_i, its optimizer and
its privacy state (accountant, noise); none of them ever leaves the object (only
:class:`~fedsim.algorithms.base.ClientUpdate` does)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from fedsim.algorithms.base import ClientUpdate, LocalDiagnostics
from fedsim.algorithms.dp_stats import DPStatsRelease, release_from_state, release_state
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.fedhypevae.synthesis import GeneratorArtifact
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.evaluation.blend import ClientEvaluation
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_generator
from fedsim.evaluation.global_test import GlobalTestSet
from fedsim.models.fedhypevae import FedHypeVAEModel, is_shared, project_to_ball
from fedsim.models.init import seeded
from fedsim.privacy.accounting import calibrate_release_noise
from fedsim.privacy.aggregate import client_noise_multiplier, resolved_min_cohort
from fedsim.privacy.clipped_sums import GhostClippedSum, RecordBatch, VmapClippedSum
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_sgd import RecordLoss
from fedsim.privacy.dp_trainer import DPTrainer, ParameterGroup
from fedsim.privacy.ledger import ClientPrivacyRecord, privacy_record
from fedsim.privacy.plan import kept_records, no_dp_sgd_plan, plan_dp_sgd
from fedsim.privacy.secure_noise import dp_noise, noise_source
from fedsim.privacy.state import PrivacyState
from fedsim.privacy.statistics import release_class_statistics
from fedsim.seeding import torch_generator

if TYPE_CHECKING:
    from fedsim.data.federation import ClientData

DIAGNOSTIC_RECORDS = 256


class FedHypeVAEClient:
    """One client of FedHypeVAE (see module docstring)."""

    def __init__(self, data: ClientData, spec: FederationSpec, config: FedHypeVAEConfig, privacy: PrivacyConfig,
                 schedule: TrainingConfig, evaluation: EvaluationConfig, seed: int) -> None:
        self.client_id = data.client_id
        self.data = data
        self.config, self.evaluation, self.seed = config, evaluation, seed
        with seeded(seed, "fedhypevae-client", data.client_id):
            self.model = FedHypeVAEModel(spec.dim, spec.num_classes, config,
                                         generator=torch_generator(seed, "client-code", data.client_id))
        if config.stats_first and (config.stats_only or config.dp_sgd_parameters == "codes-heads"):
            privacy = replace(privacy, privacy_mode="strict")  # nothing trained outside DP
            with torch.no_grad():
                self.model.client_code.zero_()  # v_i starts where the warm start put the code (v = 0)
        kept = kept_records(data.x_train, data.y_train, privacy, seed, data.client_id)
        self.x = torch.as_tensor(data.x_train[kept], dtype=torch.float32)
        self.y = torch.as_tensor(data.y_train[kept], dtype=torch.long)
        self.onehot = torch.nn.functional.one_hot(self.y, spec.num_classes).float()
        # data-independent model randomness (ε_z, MMD noise); with seeded noise it is also
        # the DP-SGD noise stream, so all draws keep one order
        self.rng = torch_generator(seed, "fedhypevae-client-steps", data.client_id)
        self.stats_noise_multiplier: float | None = None
        self.stats_clip_norm = privacy.stats_clip_norm or float(np.sqrt(spec.dim))
        self.released: DPStatsRelease | None = None
        self.min_cohort = resolved_min_cohort(privacy, spec.num_clients)  # 1 with client placement
        self.trainer: DPTrainer | None = None
        if config.stats_only:
            self._privacy_state = PrivacyState.fresh(privacy, no_dp_sgd_plan(len(self.x), privacy),
                                                     schedule.local_epochs, dp_noise(privacy, self.rng))
            return
        dp_sgd_share = (1.0 - config.statistics_share if config.stats_first
                        else 1.0 - privacy.stats_epsilon_fraction)
        plan = plan_dp_sgd(len(self.x), schedule.resolved_batch_size(), schedule.rounds, schedule.local_epochs, privacy,
                           dp_sgd_share)
        self.trainer = self._build_trainer(PrivacyState.fresh(privacy, plan, schedule.local_epochs,
                                                              dp_noise(privacy, self.rng)))
        self._privacy_state = self.trainer.privacy_state

    @property
    def privacy_state(self) -> PrivacyState:
        """The client's privacy configuration, plan, accountant and noise (its trainer's, if any)."""
        return self._privacy_state

    def _dp_trainer(self) -> DPTrainer:
        if self.trainer is None:
            raise ValueError("a stats-only FedHypeVAE client runs no DP-SGD")
        return self.trainer

    def _build_trainer(self, privacy_state: PrivacyState) -> DPTrainer:
        """``strict`` (and ε = ∞): one DP-SGD group, every parameter (ψ_i, v_i, Φ) jointly
        clipped.  ``paper``: DP-SGD on Φ (Eq. 9); ψ_i and v_i outside DP, on the plain
        mean gradient of the ELBO without MMD (Eq. 8), in the same step."""
        parameters = dict(self.model.named_parameters())
        if self.config.stats_first and self.config.dp_sgd_parameters == "codes-heads":
            trained = {n: p for n, p in parameters.items() if is_footprint(n)}
            fixed = {n: p for n, p in parameters.items() if not is_footprint(n)}
            return DPTrainer(trained, VmapClippedSum(self._mmd_loss(fixed)),
                             torch.optim.Adam(trained.values(), lr=self.config.lr), privacy_state,
                             num_records=len(self.x))
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        privacy = privacy_state.privacy
        if not (privacy.private and privacy.privacy_mode == "paper"):
            return DPTrainer(parameters, self._ghost(VmapClippedSum(self._record_loss())), optimizer, privacy_state,
                             num_records=len(self.x))
        shared = {n: p for n, p in parameters.items() if is_shared(n)}
        local = {n: p for n, p in parameters.items() if not is_shared(n)}
        outside_dp = ParameterGroup(local, GhostClippedSum(self.model, self._elbo_batch_losses))
        return DPTrainer(shared, self._ghost(), optimizer, privacy_state, outside_dp=outside_dp,
                         num_records=len(self.x))

    def _ghost(self, unclipped: VmapClippedSum | None = None) -> GhostClippedSum:
        """The whole-model objective's clipped sums by ghost clipping with book-keeping
        (per-record norms from the layers' inputs and output gradients, the sum from the same
        rows, :mod:`fedsim.privacy.ghost_clipping`; no ``(B, #params)`` per-record gradients,
        one backward pass); its unclipped mean gradient (ε = ∞) stays ``unclipped``'s (``paper``
        mode runs only at finite ε, where no unclipped mean is taken)."""
        return GhostClippedSum(self.model, self.model.batch_losses, mean_from=unclipped, bookkeeping=True)

    def _record_loss(self, fixed: Mapping[str, nn.Parameter] | None = None) -> RecordLoss:
        """ℓ_j(p; x_j, onehot_j, ε_z,j, mmd_noise) as a function of the trained parameters
        ``p`` (a functional call of the model); ``fixed`` parameters enter as constants."""
        model, fixed = self.model, dict(fixed or {})

        def record_loss(p: dict[str, Tensor], x: Tensor, onehot: Tensor, eps_z: Tensor,
                        mmd_noise: Tensor) -> Tensor:
            constants = {name: value.detach() for name, value in fixed.items()}
            loss: Tensor = functional_call(model, {**constants, **p}, (x, onehot, eps_z, mmd_noise))
            return loss
        return record_loss

    def _elbo_batch_losses(self, x: Tensor, onehot: Tensor, eps_z: Tensor,
                           mmd_noise: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The batch's per-record negative ELBO without MMD (``paper`` mode's update of ψ_i
        and v_i outside DP, Eq. 8)."""
        with _without_mmd(self.model):
            return self.model.batch_losses(x, onehot, eps_z, mmd_noise)

    def _mmd_loss(self, fixed: Mapping[str, nn.Parameter]) -> RecordLoss:
        """ℓ_j(p; x_j, onehot_j, mmd_noise) = the record's MMD term (Eq. 6) of the client's
        generator, as a function of the trained footprint ``p``; ``fixed`` enter as constants."""
        objective, fixed = _MMDObjective(self.model), dict(fixed)

        def record_loss(p: dict[str, Tensor], x: Tensor, onehot: Tensor, mmd_noise: Tensor) -> Tensor:
            constants = {f"model.{name}": value.detach() for name, value in fixed.items()}
            trained = {f"model.{name}": value for name, value in p.items()}
            loss: Tensor = functional_call(objective, {**constants, **trained}, (x, onehot, mmd_noise))
            return loss
        return record_loss

    # --- one round ----------------------------------------------------------------
    def local_round(self, broadcast: Mapping[str, Tensor], round_index: int) -> tuple[ClientUpdate, LocalDiagnostics]:
        if self.trainer is None:  # stats-only: nothing to train, nothing read, no ε spent
            count = self.privacy_state.public_sample_count(len(self.x))
            return ClientUpdate(self.client_id, {}, count), LocalDiagnostics(self.client_id, {})
        shared = {n: p for n, p in self.model.named_parameters() if is_shared(n)}
        footprint = self.config.stats_first and self.config.dp_sgd_parameters == "codes-heads"
        delta = self.trainer.run_round(shared, broadcast, self._footprint_step if footprint else self._step)
        # with DP n_i is hidden: the public bound (equal weights in Eq. 10)
        update = ClientUpdate(self.client_id, delta, num_samples=self.privacy_state.public_sample_count(len(self.x)))
        return update, LocalDiagnostics(self.client_id, self._diagnostics())

    def _step(self) -> None:
        """One DP-SGD step (Eq. 9) on a Poisson batch, the record-free regularizer (Eq. 5)
        outside clipping, then v_i projected back onto its ball."""
        trainer, latent = self._dp_trainer(), self.config.latent_dim
        batch = trainer.sample_batch()
        records = (self.x[batch], self.onehot[batch], torch.randn(len(batch), latent, generator=self.rng))
        mmd_noise = torch.randn(self.config.mmd_samples, latent, generator=self.rng)
        trainer.step(RecordBatch(records, (mmd_noise,)), penalty=self.model.regularizer)
        with torch.no_grad():
            self.model.client_code.copy_(project_to_ball(self.model.client_code, self.config.code_radius))

    def _footprint_step(self) -> None:
        """The small-footprint DP-SGD step (``stats-first``, ``codes-heads``): the record's
        MMD term (Eq. 6) differentiated w.r.t. v_i and the head of h_θ only, clipped
        jointly, noised (Eq. 9); λ_v ‖v_i‖² outside clipping; v_i projected onto its ball."""
        trainer = self._dp_trainer()
        batch = trainer.sample_batch()
        mmd_noise = torch.randn(self.config.mmd_samples, self.config.latent_dim, generator=self.rng)
        trainer.step(RecordBatch((self.x[batch], self.onehot[batch]), (mmd_noise,)),
                     penalty=lambda: self.config.lambda_v * self.model.client_code.pow(2).sum())
        with torch.no_grad():
            self.model.client_code.copy_(project_to_ball(self.model.client_code, self.config.code_radius))

    @torch.no_grad()
    def _diagnostics(self) -> dict[str, float]:
        """Simulator-side loss on a fixed subset of train records (never released)."""
        count = min(DIAGNOSTIC_RECORDS, len(self.x))
        rng = torch_generator(self.seed, "diagnostics", self.client_id)
        x, onehot = self.x[:count], self.onehot[:count]
        eps = torch.randn(count, self.config.latent_dim, generator=rng)
        noise = torch.randn(self.config.mmd_samples, self.config.latent_dim, generator=rng)
        terms = torch.func.vmap(self.model.record_terms, in_dims=(0, 0, 0, None))(x, onehot, eps, noise)
        return {name: float(value.mean()) for name, value in terms.items()}

    # --- after training -----------------------------------------------------------
    def release(self) -> DPStatsRelease:
        """DP class statistics (Gaussian mechanism, q = 1), recorded in the accountant so
        that the ledger's ε composes DP-SGD and this release.  ``stats-first``: the one
        release of :meth:`release_once` (the warm start's and Eq. 11's).  Asked again (a
        ``--resume`` from the checkpoint written after the release), the same release: no
        second mechanism on fresh noise."""
        if self.config.stats_first:
            return self.release_once()
        if self.released is not None:
            return self.released
        state, privacy = self.privacy_state, self.privacy_state.privacy
        if state.private:
            state.check_release_fits()
            sigma = calibrate_release_noise(state.accountant.history, privacy.epsilon, privacy.delta,
                                            privacy.accountant)
            self.stats_noise_multiplier = sigma
        else:
            sigma = 0.0
        self.released = self._released_statistics(sigma, self.stats_clip_norm)
        return self.released

    def _released_statistics(self, sigma: float, clip_norm: float) -> DPStatsRelease:
        """The Gaussian release of the class statistics for the aggregate's noise multiplier
        ``sigma``: this client adds ``σ/√m_min`` with ``--privacy.noise-placement aggregate``
        (:mod:`fedsim.privacy.aggregate`; σ itself with ``client``), and its accountant
        records σ (what the server's sum of ≥ m_min releases carries)."""
        state, privacy = self.privacy_state, self.privacy_state.privacy
        own_sigma = client_noise_multiplier(sigma, self.min_cohort)
        statistics = release_class_statistics(self.x, self.y, self.onehot.shape[1], clip_norm, own_sigma,
                                              privacy.released_covariance,
                                              noise_source(privacy, self.seed, "statistics", self.client_id))
        if state.private:
            state.accountant.record(sigma, 1.0, 1, kind="release")
        return DPStatsRelease(statistics, own_sigma, clip_norm, self.min_cohort)

    def release_once(self) -> DPStatsRelease:
        """``stats-first``: the class statistics of :mod:`fedsim.privacy.statistics`, released
        ONCE (asked again, the same release; no new mechanism), before any DP-SGD.  σ_s is
        the smallest noise multiplier that keeps the composition with the PLANNED DP-SGD
        (σ, q, T) within ε (for ``stats-only`` the release alone spends ε), so the accountant's
        ε of the whole history stays ≤ the target.  At ε = ∞: exact statistics, no clipping."""
        if self.released is not None:
            return self.released
        state, privacy = self.privacy_state, self.privacy_state.privacy
        sigma, clip_norm = 0.0, math.inf
        if state.private:
            clip_norm = self.stats_clip_norm
            plan = state.sgd_plan()
            planned = [(plan.noise_multiplier, plan.sample_rate, plan.total_steps)] if plan.total_steps else []
            sigma = calibrate_release_noise(planned, privacy.epsilon, privacy.delta, privacy.accountant)
            self.stats_noise_multiplier = sigma
        self.released = self._released_statistics(sigma, clip_norm)
        return self.released

    def evaluate(self, artifact: GeneratorArtifact, global_test: GlobalTestSet | None = None) -> ClientEvaluation:
        """Reference protocol: local classifier on real train data blended with one trained
        on synthetic data sampled from the shared generator (``global_test``: the
        simulator's global test set, scored only)."""
        return evaluate_generator(self.data, artifact, self.evaluation, self.seed, global_test)

    def privacy_record(self) -> ClientPrivacyRecord:
        return privacy_record(self.client_id, self.privacy_state, self.stats_noise_multiplier,
                              self.stats_clip_norm, self.min_cohort)

    # --- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(),
                 "optimizer": None if self.trainer is None else self.trainer.optimizer.state_dict(),
                 "privacy_state": self.privacy_state.state_dict(), "rng": self.rng.get_state(),
                 "stats_noise_multiplier": self.stats_noise_multiplier}
        if self.released is not None:
            state["released"] = release_state(self.released)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.trainer is not None:
            self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.privacy_state.load_state_dict(state["privacy_state"])
        self.rng.set_state(state["rng"])
        self.stats_noise_multiplier = state["stats_noise_multiplier"]
        self.released = release_from_state(state["released"]) if "released" in state else None


FOOTPRINT = ("client_code", "decoder.head.")


def is_footprint(name: str) -> bool:
    """Parameters of the small DP footprint: the client code v_i and the output head of h_θ
    (the generator of Eq. 3's per-layer row scales and bias shifts)."""
    return name.startswith(FOOTPRINT)


class _MMDObjective(nn.Module):
    """``forward = model.record_mmd`` (so that ``functional_call`` can differentiate it)."""

    def __init__(self, model: FedHypeVAEModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, onehot: Tensor, mmd_noise: Tensor) -> Tensor:
        return self.model.record_mmd(x, onehot, mmd_noise)


class _without_mmd:
    """Temporarily evaluate the model's ELBO only (Eq. 8 updates ψ_i, v_i on −ELBO)."""

    def __init__(self, model: FedHypeVAEModel) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.saved = self.model.config
        self.model.config = replace(self.saved, lambda_mmd=0.0)

    def __exit__(self, *exc: object) -> None:
        self.model.config = self.saved
