"""Privacy options shared by every private algorithm (tyro-exposed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedsim.validation import check, finite


def auto_covariance(private: bool) -> Literal["diag", "full"]:
    """What ``auto`` releases (``--privacy.covariance``, ``--dp-stats.covariance``): the full
    second moments without DP (exact statistics: the matrix costs nothing), the diagonal with it."""
    return "diag" if private else "full"


@dataclass(frozen=True)
class PrivacyConfig:
    """Sample-level (ε, δ)-DP per client; see docs/design.md, "Privacy model"."""

    epsilon: float = 1.0
    """Target ε per client for everything it releases (``inf`` disables DP)."""
    delta: float = 1e-4
    """Target δ per client."""
    clip_norm: float = 1.5
    """DP-SGD clipping bound C on each record's joint gradient norm."""
    accountant: Literal["rdp", "prv"] = "rdp"
    """Opacus accountant used to calibrate σ and to report ε."""
    privacy_mode: Literal["strict", "paper"] = "strict"
    """``strict``: one DP-SGD step on the joint per-sample gradient of every parameter a
    client trains (encoder ψ_i, code v_i, its copy of Φ); formally sound.  ``paper``:
    Eq. 8–9 literally (DP on Φ only, ψ_i and v_i trained without noise); its ε does
    NOT cover the local state, and every output says so."""
    stats_epsilon_fraction: float = 0.1
    """Share of ε kept for the release of class statistics (meta-code fitting); DP-SGD
    is calibrated for the rest, and the release noise is the smallest that keeps the
    composed ε ≤ the target."""
    stats_clip_norm: float | None = None
    """Norm bound R on each embedding before statistics (sensitivity R for sums, R² for
    second moments); default √d, which suits features of unit scale."""
    covariance: Literal["auto", "diag", "full"] = "auto"
    """Second moments released per class: the diagonal (d numbers) or the full d×d matrix;
    ``auto``: full at ε = ∞ (the statistics are exact: the matrix costs nothing and carries the
    data's correlations), diagonal at finite ε (d² noisy entries, each with the diagonal's
    noise std, would swamp the d² − d off-diagonal ones)."""
    max_records: int = 2048
    """Public bound on each client's train records; it defines the neighbouring relation
    (add/remove one record, with every client's size hidden).  DP-SGD is planned from it
    (``q = B / max_records``, ``T = (rounds + reserved_rounds) × local_epochs ×
    ⌈max_records / B⌉``, noisy sums divided by ``B``), and Eq. 10's weights and the
    synthetic set's size use DP counts, never the exact n_i.  A client with more records
    keeps ``max_records`` of them (a seeded rank per record); for such a client one added
    or removed record can swap one kept record, so its guarantee is the one for replacing
    a record (group privacy of 2 add/remove neighbours), and the run's note says so.  The
    default covers ``synthetic`` and ``digits`` with 10 clients (largest client: 1,084
    train records, Dirichlet α = 0.3) and synthetic-organs IID (1,615); synthetic-organs
    with Dirichlet α = 0.3 has clients up to 2,710 (raise the bound for it).  A larger
    bound costs small clients signal (each step sees n_i·B/max_records of their records)
    and runs ``⌈max_records/B⌉`` steps per local epoch.  Never computed from the data
    (it would not be public)."""
    reserved_rounds: int = 1
    """Local rounds of DP-SGD reserved in the calibration for rounds charged again after a
    lost worker or an interrupted run (``--resume``): σ is calibrated for ``rounds +
    reserved_rounds`` rounds, and a client asked to run DP-SGD beyond its plan stops the
    run with a clear error instead of ending above the target ε."""
    noise_placement: Literal["client", "aggregate"] = "client"
    """Where the class-statistics releases (dp-stats, FedHypeVAE) get their noise.
    ``client``: each client's release carries the whole N(0, (σ_s·√3)²) per normalised
    coordinate, so the guarantee holds against anyone who sees it.  ``aggregate`` (the
    secure-aggregation trust model): each client adds std σ_s·√3/√m_min
    (``--privacy.min-cohort``), so only the SUM over ≥ m_min clients that the server
    pools carries σ_s; the guarantee holds for each record against a party that sees only
    that sum, assuming honest clients that keep their noise secret, and the server
    refuses a sum of fewer releases.  DP-SGD updates and releases used per client keep
    ``client`` placement (a method with nothing else is refused; README, "Privacy model")."""
    min_cohort: int | None = None
    """``aggregate`` only: m_min, the fewest clients whose releases the server may sum (a
    public parameter; each client's noise is calibrated so that m_min of them carry σ_s).
    Default: every client of the federation (no dropout tolerated)."""
    reproducible_noise: bool = False
    """Draw DP noise and Poisson sampling from generators seeded by the run seed instead of
    the OS's cryptographically secure generator, for debugging and bit-equality tests
    only.  The seed is in config.json, so anyone can rebuild the noise: the DP guarantee
    does NOT hold, and every output says so."""

    @property
    def private(self) -> bool:
        """False when ε = ∞ (no noise, no clipping)."""
        return self.epsilon != float("inf")

    @property
    def released_covariance(self) -> Literal["diag", "full"]:
        """The second moments released per class: ``covariance`` with ``auto`` resolved."""
        return auto_covariance(self.private) if self.covariance == "auto" else self.covariance

    def validate(self, prefix: str = "--privacy.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("epsilon", self.epsilon > 0, "a number > 0 (or inf for no DP)"),
            ("delta", 0 < self.delta < 1, "a number in (0, 1)"),
            ("clip_norm", finite(self.clip_norm) and self.clip_norm > 0, "a finite number > 0"),
            ("stats_epsilon_fraction", 0 < self.stats_epsilon_fraction < 1, "a number in (0, 1)"),
            ("max_records", isinstance(self.max_records, int) and self.max_records >= 1, "an integer >= 1"),
            ("reserved_rounds", isinstance(self.reserved_rounds, int) and self.reserved_rounds >= 0,
             "an integer >= 0"),
            ("stats_clip_norm", self.stats_clip_norm is None
             or (finite(self.stats_clip_norm) and self.stats_clip_norm > 0), "a finite number > 0"),
            ("reproducible_noise", isinstance(self.reproducible_noise, bool), "true or false"),
            ("noise_placement", self.noise_placement in ("client", "aggregate"), "one of client, aggregate"),
            ("covariance", self.covariance in ("auto", "diag", "full"), "one of auto, diag, full"),
            ("min_cohort", self.min_cohort is None
             or (isinstance(self.min_cohort, int) and not isinstance(self.min_cohort, bool) and self.min_cohort >= 1),
             "an integer >= 1 (default: the number of clients)"),
            ("min_cohort", self.min_cohort is None or self.noise_placement == "aggregate",
             "unset with --privacy.noise-placement client (it sizes the aggregate's noise shares)"),
        ])
