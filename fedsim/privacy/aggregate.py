"""Distributed noise (``--privacy.noise-placement aggregate``): the secure-aggregation
trust model of DP federated learning, for releases the server only uses summed.

With ``client`` placement (the default) a client's Gaussian release carries the whole
noise ``N(0, (σ Δ)²)`` per coordinate (Δ the release's L2 sensitivity), so each record's
guarantee holds against anyone who sees that one release.  With ``aggregate`` placement
each participating client adds ``N(0, (σ Δ)² / m_min)`` only, m_min =
``--privacy.min-cohort`` (public; default: every client); the server sees the SUM of the
releases of ``m ≥ m_min`` clients, whose noise is ``N(0, (σ Δ)² m / m_min)``, at least
``N(0, (σ Δ)²)``.  One record of one client moves that sum by at most Δ, so the sum is a
Gaussian mechanism of noise multiplier ≥ σ, and each client's accountant records σ (the
aggregate's multiplier, conservative when more than m_min clients report).  The
guarantee holds for each record against a party that sees ONLY the sum (a server behind
secure aggregation, and anyone it publishes to), assuming the other clients are honest
and keep their noise secret: every client that reveals its noise to the server removes
1/m_min of the noise variance.  It does not hold against a party that sees one client's
release (that release carries σ/√m_min).  A sum of fewer than m_min releases (dropouts)
would carry less than σ: :func:`check_cohort` refuses it (:class:`CohortTooSmall`) before
anything is pooled.

What it applies to, and what it does not (docs/design.md, "Privacy model"):

* the class-statistics release (:mod:`fedsim.privacy.statistics`) of ``dp-stats`` and of
  FedHypeVAE, which the server only pools (sums) — the counts, sums and second moments,
  the released size ``Σ N_y`` and the validity threshold are all read from the sum;
* NOT DP-SGD: with several local steps a client's trajectory after its first step
  depends on its own reduced noise, which is never released, so the standard adaptive
  composition over the released sums does not apply; DP-SGD updates (FedHypeVAE's phase
  with ``--fedhypevae.statistics-share`` < 1, or ``--fedhypevae.training dp-sgd``) keep
  ``client`` placement and the full σ per client, which is sound against a party that
  sees every single update; a method whose mechanisms are all DP-SGD or per-client
  releases (FedAvg/FedProx/FedLambda with DP, DP-FedAvg/FedProx, DP-CVAE, DP-CGAN: their
  label counts weight Eq. 10 per client) is refused (:func:`check_noise_placement`).

The simulation sums floats and hands the server the clients' release objects, of which
it reads only the sum; a deployment needs a secure-aggregation protocol (with a
discretised noise, e.g. the distributed discrete Gaussian of Kairouz et al. 2021) whose
small extra privacy cost is not modelled here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fedsim.errors import UserError
from fedsim.privacy.config import PrivacyConfig

if TYPE_CHECKING:
    from fedsim.algorithms.registry import MethodRecord

AGGREGATE_NOTE = (
    "noise_placement=aggregate (min_cohort={cohort}): each client's class-statistics release "
    "carries the noise multiplier (noise std / sensitivity) sigma_st/sqrt({cohort}), and only the "
    "server's SUM over at least {cohort} clients carries the noise multiplier sigma_st that epsilon is computed with; the statistics' "
    "guarantee holds for each record against a party that sees only that sum (secure aggregation, "
    "honest clients that keep their noise secret; each client colluding with the server removes "
    "1/{cohort} of the noise variance), NOT against one who sees a client's own release. DP-SGD "
    "updates keep client placement (the full sigma per client)."
)


class CohortTooSmall(UserError):
    """Fewer clients' releases than ``--privacy.min-cohort`` reached the sum: their noise
    would fall below σ, so nothing is pooled or released."""


def resolved_min_cohort(privacy: PrivacyConfig, num_clients: int) -> int:
    """m_min: ``--privacy.min-cohort``, default every client; 1 for ``client`` placement
    (every release alone carries σ).  A ``UserError`` when it exceeds the federation."""
    if privacy.noise_placement == "client":
        return 1
    cohort = num_clients if privacy.min_cohort is None else privacy.min_cohort
    if cohort > num_clients:
        raise UserError(f"--privacy.min-cohort must be at most the federation's {num_clients} clients "
                        f"(a release sum needs that many), got {cohort}.")
    return cohort


def client_noise_multiplier(aggregate_multiplier: float, min_cohort: int) -> float:
    """The noise multiplier a client adds so that ``min_cohort`` of them sum to
    ``aggregate_multiplier``: ``σ / √m_min`` (σ itself for ``m_min = 1``)."""
    if min_cohort == 1:
        return aggregate_multiplier
    return aggregate_multiplier / math.sqrt(min_cohort)


def summed_noise_multiplier(client_multipliers: list[float]) -> float:
    """The noise multiplier of a sum of independent releases: ``√(Σ σ_i²)``."""
    return math.sqrt(sum(s * s for s in client_multipliers))


def check_cohort(releases: int, min_cohort: int) -> None:
    """Raise :class:`CohortTooSmall` when a sum of ``releases`` client releases would carry
    less noise than the one accounted (module docstring)."""
    if releases < min_cohort:
        raise CohortTooSmall(
            f"only {releases} client release(s) reached the aggregate, fewer than --privacy.min-cohort "
            f"{min_cohort} that each client's noise share was calibrated for, so their sum would carry "
            "less noise than the accounted sigma; nothing is released (rerun with the clients, or declare "
            "a smaller --privacy.min-cohort before the run).")


def check_noise_placement(record: MethodRecord, privacy: PrivacyConfig, prefix: str = "--privacy.") -> None:
    """Refuse ``aggregate`` placement for a method with no release that the server only
    uses summed (module docstring); one sentence naming the option."""
    if privacy.noise_placement == "aggregate" and not record.aggregate_releases:
        raise UserError(
            f"{prefix}noise-placement aggregate applies to the pooled class-statistics releases of "
            f"dp-stats and fedhypevae only; {record.name} releases DP-SGD updates (or counts used per "
            "client), whose local steps would depend on each client's unreleased reduced noise, so use "
            f"{prefix}noise-placement client.")
