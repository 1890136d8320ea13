"""Canaries in the Gaussian release of class statistics, for the one-run audit only
(``python -m fedsim.audit --target statistics``).

The release (:func:`fedsim.privacy.statistics.release_class_statistics`: FedHypeVAE's
statistics for the meta-code of Eq. 11, and dp-stats' only release) norm-clips every
record to ``R`` and publishes, per class y, ``[N_y, S_y, M_y]`` plus Gaussian noise of
std ``√3·σ_s·[1, R, R²]``.  The clipping is on the raw records, so the canaries are
records (input-space canaries): canary k is the record ``x = R·e_{c_k}`` of class
``y_k``, on ``m`` distinct pairs ``(y_k, c_k)`` of class × coordinate, each included in
the client's train records with probability ½ (the secret).  Its clipped contribution
is a Dirac of norm R in ``S_{y_k}`` at coordinate ``c_k`` (and ``R²`` in the second
moment there, 1 in the count), the most one record may add.

Score (the auditor knows every other record, the adversary DP assumes): the released
values at the canary's place minus those of the client's own records, normalised,

    score_k = (S̃_{y_k}[c_k] − S^data_{y_k}[c_k]) / R + (M̃_{y_k}[c_k] − M^data_{y_k}[c_k]) / R²,

which is ``2 + noise`` for an included canary and ``noise`` for an excluded one (noise
std ``√6·σ_s``); ``M[c_k]`` is the diagonal entry for ``full`` covariance.

The client is built as a normal run builds it and releases through its own
``release()`` (its σ_s calibration, noise source and accountant).  FedHypeVAE's σ_s is
calibrated for what DP-SGD left of ε: the audit first charges the client's accountant
with the DP-SGD steps of ``--training.rounds`` rounds (σ_s depends only on that public
history, so DP-SGD itself is not run), and the claimed ε is the release's own (one
Gaussian mechanism, :meth:`~fedsim.privacy.accounting.ClientAccountant.epsilon_of_release`).
At ε = ∞ dp-stats does not clip (``R = ∞``); its canaries then have norm √d.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fedsim.audit.bound import audit_guesses
from fedsim.audit.run import AuditResult, audited_client, roc_auc
from fedsim.errors import UserError
from fedsim.privacy.dp_trainer import record_dp_sgd_steps
from fedsim.privacy.statistics import ClassStatistics, class_statistics
from fedsim.seeding import numpy_rng


@dataclass(frozen=True)
class ReleaseRecords:
    """Where a method's client holds the records its statistics release reads, and R."""

    features: str
    labels: str
    clip_norm: str


RELEASE_RECORDS = {
    "fedhypevae": ReleaseRecords("x", "y", "stats_clip_norm"),
    "dp-stats": ReleaseRecords("x", "labels", "clip_norm"),
}
"""The methods whose client releases class statistics (``release()``), by name."""


@dataclass(frozen=True)
class StatisticsCanaries:
    """``m`` canary records ``norm·e_{coordinates[k]}`` of class ``classes[k]`` on distinct
    (class, coordinate) pairs, each included with probability ½ (module docstring)."""

    classes: np.ndarray
    coordinates: np.ndarray
    included: np.ndarray
    norm: float

    @classmethod
    def draw(cls, num_classes: int, dim: int, count: int, norm: float,
             rng: np.random.Generator) -> "StatisticsCanaries":
        if not 2 <= count <= num_classes * dim:
            raise ValueError(f"need 2 <= canaries <= {num_classes * dim} (classes × dimensions), got {count}")
        pairs = np.sort(rng.choice(num_classes * dim, size=count, replace=False))
        return cls(pairs // dim, pairs % dim, rng.random(count) < 0.5, float(norm))

    def records(self, dim: int) -> tuple[Tensor, Tensor]:
        """The included canaries as records ``(x (c, d) float32, y (c,) int64)``."""
        chosen = np.flatnonzero(self.included)
        x = torch.zeros(len(chosen), dim)
        x[torch.arange(len(chosen)), torch.as_tensor(self.coordinates[chosen])] = self.norm
        return x, torch.as_tensor(self.classes[chosen], dtype=torch.long)

    def scores(self, released: ClassStatistics, own: ClassStatistics) -> np.ndarray:
        """``score_k`` of the module docstring: the released sum and second moment at each
        canary's (class, coordinate) minus those of the client's own records, normalised."""
        y, c = torch.as_tensor(self.classes), torch.as_tensor(self.coordinates)
        sums = (released.sums - own.sums)[y, c] / self.norm
        second = released.second_moments - own.second_moments
        second = second[y, c] if second.dim() == 2 else second[y, c, c]
        return (sums + second / self.norm**2).double().numpy()


def run_statistics_audit(command) -> AuditResult:
    """The statistics-release audit of ``command`` (module docstring)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    access = RELEASE_RECORDS.get(command.algorithm)
    if access is None:
        raise UserError(f"--target statistics audits a method that releases class statistics "
                        f"({', '.join(RELEASE_RECORDS)}), got --algorithm {command.algorithm}.")
    if command.privacy.noise_placement == "aggregate":
        raise UserError("--target statistics audits one client's own release, which at --privacy.noise-placement "
                        "aggregate carries only its noise share sigma/sqrt(min-cohort) and is not covered alone; "
                        "audit it with --privacy.noise-placement client.")
    audited = audited_client(command)
    client, spec = audited.client, audited.spec
    if command.canaries > spec.num_classes * spec.dim:
        raise UserError(f"--canaries must be at most {spec.num_classes * spec.dim} (classes × dimensions) "
                        f"with --target statistics, got {command.canaries}.")
    clip_norm = float(getattr(client, access.clip_norm))
    norm = clip_norm if math.isfinite(clip_norm) else math.sqrt(spec.dim)
    canaries = StatisticsCanaries.draw(spec.num_classes, spec.dim, command.canaries, norm,
                                       numpy_rng(command.seed, "audit-statistics-canaries"))
    state = client.privacy_state
    charged = 0
    if state.private and state.plan is not None:  # the DP-SGD history σ_s is calibrated after
        charged = command.training.rounds * state.steps_per_round()
        if charged:
            record_dp_sgd_steps(state, charged)
    x, y = getattr(client, access.features), getattr(client, access.labels)
    canary_x, canary_y = canaries.records(spec.dim)
    setattr(client, access.features, torch.cat([x, canary_x]))
    setattr(client, access.labels, torch.cat([y, canary_y]))
    release = client.release()
    released = release if isinstance(release, ClassStatistics) else release.statistics
    own = class_statistics(x, y, spec.num_classes, clip_norm, released.covariance)
    scores = canaries.scores(released, own)
    bound = audit_guesses(scores, canaries.included, command.privacy.delta, command.beta)
    claimed = state.accountant.epsilon_of_release() if state.private else math.inf
    release_parameters = {"noise_multiplier": float(client.stats_noise_multiplier or 0.0), "clip_norm": clip_norm,
                          "canary_norm": norm, "covariance": released.covariance,
                          "dp_sgd_steps_charged_before": charged, "client_epsilon_total": float(state.epsilon())}
    return AuditResult(scores, canaries.included.copy(), canaries.included.astype(np.int64), bound,
                       roc_auc(scores, canaries.included), float(claimed), command.privacy.delta,
                       release_parameters, 1, len(x), time.perf_counter() - started,
                       time.process_time() - started_cpu, target="statistics")


__all__ = ["RELEASE_RECORDS", "StatisticsCanaries", "run_statistics_audit"]
