"""``dp-stats``: the simplest DP generator, and the floor every learned generator must beat.

Each client releases its per-class statistics ONCE with the Gaussian mechanism of
:mod:`fedsim.privacy.statistics` (the same mechanism, clipping rule and accountant as
FedHypeVAE's statistics for Eq. 11): every record is norm-clipped to ``R``, and the
normalised triple ``[N_y, S_y/R, M_y/R²]`` (counts, sums, diagonal or full second
moments) gets ``N(0, (σ_s·√3)²)`` noise on every coordinate (L2 sensitivity √3).  The
release spends the client's WHOLE budget: ``σ_s`` is the smallest noise multiplier for
which the single Gaussian mechanism ``(σ_s, q = 1, 1 step)`` spends ≤ ε at δ in the
client's accountant (:func:`~fedsim.privacy.accounting.calibrate_release_noise` with an
empty history).  Nothing else a client holds leaves it, so the ledger's ε is exactly
that one mechanism's.  At ε = ∞ there is no noise and no clipping (``R = ∞``), as for
every method: the statistics are exact.  With ``--privacy.noise-placement aggregate``
(:mod:`fedsim.privacy.aggregate`) each client adds ``σ_s/√m_min`` of noise and the server
pools only a sum of ≥ m_min releases (:func:`pooled_statistics`), which then carries
``σ_s`` instead of the ``√K·σ_s`` of K client-placed releases; the accountant records σ_s.

The server pools the releases (sums; post-processing) and forms, per class y,

* ``μ̂_y = S_y / N_y`` and ``Σ̂_y = M_y / N_y − μ̂_y μ̂_yᵀ`` (the diagonal for ``diag``);
* shrinkage towards the pooled all-class covariance ``Σ̂_all`` (from the class-summed
  statistics): ``Σ_y = (1 − λ) Σ̂_y + λ Σ̂_all`` (``--dp-stats.shrinkage``, default 0);
* a PSD projection with a variance floor ``f = variance_floor · tr(Σ̂_all)/d`` (the
  floor scales with the data's own average variance, so the option is unit free):
  ``diag`` clamps every variance at f; ``full`` clamps every eigenvalue at f;
  ``lowrank`` keeps the ``rank`` largest eigenpairs (eigenvalues clamped at f) and
  the diagonal of the rest, clamped at f (a factor-analysis form
  ``U Λ Uᵀ + D`` that keeps the diagonal of Σ_y exactly when Σ_y is PSD);
* classes whose pooled DP count is below ``max(2, min_count_stds · s_N)``, with
  ``s_N = √(Σ_i (√3 σ_i)²)`` the (public) std of the pooled count noise, are too noisy
  to trust: they get the pooled mean and the pooled covariance, and zero probability
  in the released label distribution.

The artifact samples class-conditional Gaussians ``x = μ_y + F_y z + s_y ⊙ ε``
(``F_y`` the eigen-factor, ``s_y`` the residual std); labels come from the pooled DP
counts of the valid classes.  All of it is post-processing of the releases.

``diag`` releases d numbers of second moments per class, ``full`` and ``lowrank`` d²
(the same release: ``lowrank`` only differs in the server's post-processing, which
discards the eigen-directions where the release is mostly noise).  The noise std of a
covariance entry is ``√3 σ_s R² / N_y``, against ``√3 σ_s R / N_y`` for a mean; with
``R = √d`` the covariance is the first thing DP destroys (see README, *Methods*).

There is no training: the round driver still runs ``--training.rounds`` (≥ 1) rounds,
in which a client does nothing, sends an empty update and spends no privacy; the
release happens once, after the last round.  ``--training.*`` (but ``rounds``),
``--privacy.clip-norm``, ``--privacy.stats-clip-norm``, ``--privacy.covariance`` and
``--privacy.stats-epsilon-fraction`` do not apply (``--dp-stats.*`` replaces them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from fedsim.algorithms.base import ClientUpdate, LocalDiagnostics, SharedStateServer, check_update_keys, synthesize
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.evaluation.blend import ClientEvaluation
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_generator
from fedsim.evaluation.global_test import GlobalTestSet
from fedsim.privacy.accounting import calibrate_release_noise
from fedsim.privacy.aggregate import check_cohort, client_noise_multiplier, resolved_min_cohort
from fedsim.privacy.config import PrivacyConfig, auto_covariance
from fedsim.privacy.labels import label_distribution
from fedsim.privacy.ledger import ClientPrivacyRecord, privacy_record
from fedsim.privacy.plan import kept_records, no_dp_sgd_plan
from fedsim.privacy.secure_noise import noise_source
from fedsim.privacy.state import PrivacyState
from fedsim.privacy.statistics import (SENSITIVITY, ClassStatistics, moments_from_statistics, pooled,
                                       release_class_statistics)
from fedsim.validation import check, finite

if TYPE_CHECKING:
    from fedsim.algorithms.registry import RunSettings
    from fedsim.data.federation import ClientData

TAG = "dp-stats"


@dataclass(frozen=True)
class DPStatsConfig:
    """Options of the ``dp-stats`` baseline (module docstring)."""

    clip_norm: float | None = None
    """Norm bound R on each embedding before the statistics (sensitivity R for sums, R² for second moments); default √d, as FedHypeVAE's statistics."""
    covariance: Literal["auto", "diag", "full", "lowrank"] = "auto"
    """Per-class covariance: ``diag`` (releases d second moments per class), ``full`` (releases the d×d matrix) or ``lowrank`` (the same d×d release, kept as its top ``rank`` eigenpairs plus a diagonal); ``auto``: ``full`` at ε = ∞ (exact statistics), ``diag`` at finite ε (as ``--privacy.covariance auto``)."""
    rank: int = 8
    """Eigenpairs kept per class by ``--dp-stats.covariance lowrank`` (at most d)."""
    shrinkage: float = 0.0
    """λ in [0, 1]: each class covariance is (1 − λ)·its own + λ·the pooled all-class covariance."""
    variance_floor: float = 1e-3
    """Smallest variance (eigenvalue) kept, as a fraction of the pooled all-class average variance tr(Σ̂_all)/d."""
    min_count_stds: float = 3.0
    """A class is used when its pooled DP count is ≥ max(2, this × the std of the pooled count noise); others fall back to the pooled mean and covariance and get no labels."""

    def validate(self, prefix: str = "--dp-stats.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("clip_norm", self.clip_norm is None or (finite(self.clip_norm) and self.clip_norm > 0),
             "a finite number > 0"),
            ("covariance", self.covariance in ("auto", "diag", "full", "lowrank"), "one of auto, diag, full, lowrank"),
            ("rank", self.rank >= 1, "an integer >= 1"),
            ("shrinkage", 0.0 <= self.shrinkage <= 1.0, "a number in [0, 1]"),
            ("variance_floor", finite(self.variance_floor) and self.variance_floor >= 0, "a finite number >= 0"),
            ("min_count_stds", finite(self.min_count_stds) and self.min_count_stds >= 0, "a finite number >= 0"),
        ])

    def form(self, private: bool) -> Literal["diag", "full", "lowrank"]:
        """The covariance form of a run with (``private``) or without DP: ``auto`` resolved."""
        return auto_covariance(private) if self.covariance == "auto" else self.covariance

    def released_covariance(self, private: bool) -> Literal["diag", "full"]:
        """The second moments the clients release for this covariance form."""
        return "diag" if self.form(private) == "diag" else "full"


@dataclass(frozen=True)
class DPStatsRelease:
    """One client's message after training: its DP statistics, the public noise
    multiplier of the noise IT added (σ_s, or σ_s/√m_min with ``--privacy.noise-placement
    aggregate``; 0 at ε = ∞), the clip norm R, and ``min_cohort``: the fewest releases
    whose sum carries the accounted σ_s (1 with ``client`` placement)."""

    statistics: ClassStatistics
    noise_multiplier: float
    clip_norm: float
    min_cohort: int = 1

    @property
    def count_noise_std(self) -> float:
        """Std of the noise this client added to each released count: ``√3 ×`` its multiplier."""
        return SENSITIVITY * self.noise_multiplier


def pooled_statistics(releases: Sequence[DPStatsRelease]) -> ClassStatistics:
    """The sum of the clients' released statistics (the only thing the server reads of
    them), refused (:class:`~fedsim.privacy.aggregate.CohortTooSmall`) when fewer releases
    than a release's ``min_cohort`` reached it (its noise would fall below σ_s)."""
    check_cohort(len(releases), max(r.min_cohort for r in releases))
    return pooled([r.statistics for r in releases])


# --- client ------------------------------------------------------------------------------
class DPStatsClient:
    """Holds the client's records and accountant; releases its class statistics once."""

    def __init__(self, data: ClientData, spec: FederationSpec, config: DPStatsConfig, privacy: PrivacyConfig,
                 schedule: TrainingConfig, evaluation: EvaluationConfig, seed: int) -> None:
        self.client_id = data.client_id
        self.data, self.config, self.evaluation, self.seed = data, config, evaluation, seed
        self.privacy = replace(privacy, privacy_mode="strict")  # no local state outside DP
        self.num_classes = spec.num_classes
        kept = kept_records(data.x_train, data.y_train, self.privacy, seed, data.client_id)
        self.x = torch.as_tensor(data.x_train[kept], dtype=torch.float32)
        self.labels = torch.as_tensor(data.y_train[kept], dtype=torch.long)
        if not self.privacy.private:
            self.clip_norm = math.inf  # no DP: no clipping
        else:
            self.clip_norm = config.clip_norm or float(math.sqrt(spec.dim))
        # no DP-SGD: a plan of zero steps (the ledger's DP-SGD columns, fault recovery's charge)
        plan = no_dp_sgd_plan(len(self.x), self.privacy)
        self._privacy_state = PrivacyState.fresh(self.privacy, plan, schedule.local_epochs,
                                                 noise_source(self.privacy, seed, TAG, "release", data.client_id))
        self.stats_noise_multiplier: float | None = None
        self.min_cohort = resolved_min_cohort(self.privacy, spec.num_clients)
        self.released: DPStatsRelease | None = None

    @property
    def privacy_state(self) -> PrivacyState:
        return self._privacy_state

    def local_round(self, broadcast: Mapping[str, Tensor], round_index: int) -> tuple[ClientUpdate, LocalDiagnostics]:
        """No training: an empty update; reads no data, releases nothing, spends no ε."""
        count = self.privacy_state.public_sample_count(len(self.x))
        return ClientUpdate(self.client_id, {}, count), LocalDiagnostics(self.client_id, {})

    def release(self) -> DPStatsRelease:
        """The one Gaussian release of the class statistics with the full budget (module
        docstring), recorded in the accountant.  Asked again, it returns the same release
        (no new mechanism runs)."""
        if self.released is not None:
            return self.released
        sigma = 0.0
        if self.privacy.private:
            sigma = calibrate_release_noise([], self.privacy.epsilon, self.privacy.delta,
                                            self.privacy.accountant)
            self.stats_noise_multiplier = sigma
        own_sigma = client_noise_multiplier(sigma, self.min_cohort)  # σ_s/√m_min at aggregate placement
        statistics = release_class_statistics(self.x, self.labels, self.num_classes, self.clip_norm, own_sigma,
                                              self.config.released_covariance(self.privacy.private),
                                              self.privacy_state.noise)
        if self.privacy.private:  # the aggregate's σ_s: what the sum of ≥ m_min releases carries
            self.privacy_state.accountant.record(sigma, 1.0, 1, kind="release")
        self.released = DPStatsRelease(statistics, own_sigma, self.clip_norm, self.min_cohort)
        return self.released

    def evaluate(self, artifact: "GaussianClassGenerator", global_test: GlobalTestSet | None = None) -> ClientEvaluation:
        return evaluate_generator(self.data, artifact, self.evaluation, self.seed, global_test)

    def privacy_record(self) -> ClientPrivacyRecord:
        return privacy_record(self.client_id, self.privacy_state, self.stats_noise_multiplier, self.clip_norm,
                              self.min_cohort)

    def state_dict(self) -> dict[str, Any]:
        return {"privacy_state": self.privacy_state.state_dict(),
                "stats_noise_multiplier": self.stats_noise_multiplier,
                "released": None if self.released is None else release_state(self.released)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.privacy_state.load_state_dict(state["privacy_state"])
        self.stats_noise_multiplier = state["stats_noise_multiplier"]
        released = state["released"]
        self.released = None if released is None else release_from_state(released)


def release_state(release: DPStatsRelease) -> dict[str, Any]:
    """A release as plain tensors and numbers (client checkpoints)."""
    statistics = release.statistics
    return {"counts": statistics.counts, "sums": statistics.sums, "second_moments": statistics.second_moments,
            "noise_multiplier": release.noise_multiplier, "clip_norm": release.clip_norm,
            "min_cohort": release.min_cohort}


def release_from_state(state: dict[str, Any]) -> DPStatsRelease:
    """Inverse of :func:`release_state`."""
    return DPStatsRelease(ClassStatistics(state["counts"], state["sums"], state["second_moments"]),
                          state["noise_multiplier"], state["clip_norm"], state.get("min_cohort", 1))


# --- server and artifact -------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianClassGenerator:
    """Class-conditional Gaussians ``x = μ_y + F_y z + s_y ⊙ ε`` (z ~ N(0, I_r), ε ~ N(0, I_d))
    and the DP label distribution; everything in it is post-processing of DP releases."""

    means: Tensor               # (K, d)
    factors: Tensor             # (K, d, r): r = 0 (diag), d (full) or rank (lowrank)
    residual_std: Tensor        # (K, d)
    label_distribution: Tensor  # (K,)
    valid: Tensor               # (K,) bool: classes with their own statistics
    released_records: float | None = None  # Σ of the released noisy class counts (a DP count)

    def covariances(self) -> Tensor:
        """``F_y F_yᵀ + diag(s_y²)`` per class, (K, d, d)."""
        return self.factors @ self.factors.transpose(1, 2) + torch.diag_embed(self.residual_std.pow(2))

    def sample(self, labels: np.ndarray | Tensor, generator: torch.Generator) -> np.ndarray:
        """One draw per label; the noise is drawn for all labels at once, in label order."""
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        rank = self.factors.shape[2]
        z = torch.randn(len(labels), rank, generator=generator) if rank else None
        eps = torch.randn(len(labels), self.means.shape[1], generator=generator)
        x = self.means[labels] + self.residual_std[labels] * eps
        if z is not None:
            for y in torch.unique(labels).tolist():
                rows = labels == y
                x[rows] += z[rows] @ self.factors[y].T
        return x.numpy().astype(np.float32)

    def sample_labels(self, size: int, generator: torch.Generator) -> np.ndarray:
        """Labels drawn from the DP label distribution."""
        draws = torch.multinomial(self.label_distribution, size, replacement=True, generator=generator)
        return draws.numpy().astype(np.int64)


def covariance_factors(covariance: Tensor, form: str, rank: int, floor: float) -> tuple[Tensor, Tensor]:
    """``(F (d, r), s (d,))`` with ``F Fᵀ + diag(s²)`` the PSD-projected, floored
    ``covariance`` ((d,) diagonal or (d, d)) in ``form`` (module docstring)."""
    if form == "diag":
        return covariance.new_zeros(len(covariance), 0), covariance.clamp_min(floor).sqrt()
    symmetric = 0.5 * (covariance + covariance.T)
    eigenvalues, eigenvectors = torch.linalg.eigh(symmetric.double())  # ascending
    if form == "full":
        factor = eigenvectors * eigenvalues.clamp_min(floor).sqrt()
        return factor.float(), covariance.new_zeros(len(covariance))
    kept = min(rank, len(eigenvalues))
    top_values = eigenvalues[-kept:].clamp_min(floor)
    factor = eigenvectors[:, -kept:] * top_values.sqrt()
    residual = (symmetric.double().diagonal() - factor.pow(2).sum(dim=1)).clamp_min(floor)
    return factor.float(), residual.sqrt().float()


def class_generator(releases: Sequence[DPStatsRelease], config: DPStatsConfig) -> GaussianClassGenerator:
    """Pool the releases and build the class-conditional Gaussians (module docstring)."""
    statistics = pooled_statistics(releases)
    form = statistics.covariance if config.covariance == "auto" else config.covariance  # auto: as released
    count_noise = math.sqrt(sum(r.count_noise_std ** 2 for r in releases))
    threshold = max(2.0, config.min_count_stds * count_noise)
    moments = moments_from_statistics(statistics, min_count=threshold)
    everything = ClassStatistics(statistics.counts.sum(0, keepdim=True), statistics.sums.sum(0, keepdim=True),
                                 statistics.second_moments.sum(0, keepdim=True))
    overall = moments_from_statistics(everything, min_count=0.0)
    overall_mean, overall_covariance = overall.means[0], overall.covariances[0]
    average_variance = float(overall_covariance.diagonal().mean() if overall_covariance.dim() == 2
                             else overall_covariance.mean())
    floor = config.variance_floor * max(average_variance, 0.0)
    means, factors, residuals = [], [], []
    for y in range(len(statistics.counts)):
        valid = bool(moments.valid[y])
        mean = moments.means[y] if valid else overall_mean
        covariance = overall_covariance
        if valid:
            covariance = (1.0 - config.shrinkage) * moments.covariances[y] + config.shrinkage * overall_covariance
        factor, residual = covariance_factors(covariance, form, config.rank, floor)
        means.append(mean)
        factors.append(factor)
        residuals.append(residual)
    counts = torch.where(moments.valid, statistics.counts, torch.zeros_like(statistics.counts))
    return GaussianClassGenerator(torch.stack(means), torch.stack(factors), torch.stack(residuals),
                                  label_distribution(counts), moments.valid.clone(),
                                  float(statistics.counts.clamp_min(0.0).sum()))


class DPStatsServer(SharedStateServer):
    """Holds nothing during the rounds; pools the releases into the generator at the end."""

    def __init__(self, spec: FederationSpec, config: DPStatsConfig) -> None:
        self.spec, self.config = spec, config
        self.shared: dict[str, Tensor] = {}

    def broadcast(self) -> dict[str, Tensor]:
        return {}

    def aggregate(self, updates: Sequence[ClientUpdate]) -> None:
        """Nothing to aggregate: every update must be empty."""
        for update in updates:
            check_update_keys(update, [])

    def finalize(self, releases: Sequence[DPStatsRelease]) -> GaussianClassGenerator:
        return class_generator(releases, self.config)


def make_server(spec: FederationSpec, settings: RunSettings) -> DPStatsServer:
    return DPStatsServer(spec, settings.method)


def make_client(data: ClientData, spec: FederationSpec, settings: RunSettings) -> DPStatsClient:
    return DPStatsClient(data, spec, settings.method, settings.privacy, settings.training, settings.evaluation,
                         settings.seed)


synthetic_set = synthesize  # labels from the DP label distribution, then the class Gaussians


__all__ = ["DPStatsClient", "DPStatsConfig", "DPStatsRelease", "DPStatsServer", "GaussianClassGenerator",
           "class_generator", "covariance_factors", "make_client", "make_server", "pooled_statistics",
           "synthetic_set"]
