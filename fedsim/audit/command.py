"""The options of ``python -m fedsim.audit`` (tyro): the federation options of a run
(``--algorithm``, ``--privacy.*``, ``--training.*``, ``--data.*``, every method's group)
plus the audit's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fedsim.algorithms.registry import DEFAULT_METHOD, MethodName, method
from fedsim.algorithms.spec import TrainingConfig
from fedsim.commands.federation_options import FederationOptions
from fedsim.data.federation import DataConfig
from fedsim.privacy.config import PrivacyConfig
from fedsim.validation import check

AUDIT_DATA = DataConfig(num_clients=1, partition="iid")
"""The audit's default federation: one client holding every record (the client is audited alone)."""
AUDIT_PRIVACY = PrivacyConfig(max_records=8192)
"""The audit's default privacy options: ``train``'s, with the public bound ``--privacy.max-records``
raised to 8192 so that the audited client's records and every canary fit under it (default data:
5,122 train records + 1,000 canaries).  DP-SGD is planned from this bound (q = B/8192, ⌈8192/B⌉
steps per local epoch), so which canaries are included never changes q, T or σ."""
AUDIT_TRAINING = TrainingConfig(rounds=10)
"""The audit's default schedule: 10 rounds (σ is calibrated for the rounds run, so the claimed ε
is the same as at 30; ``--training.rounds 30`` audits ``train``'s default schedule, ~3× longer)."""


@dataclass(frozen=True)
class AuditCommand(FederationOptions):
    """A one-run privacy audit (Steinke, Nasr & Jagielski 2023) of one client's DP-SGD
    (Dirac gradient canaries, scores from the released privatized gradients) or of its
    class-statistics release (canary records R·e_k, scores from the released sums and second
    moments), each canary included with probability ½, and the empirical lower bound ε_lb next
    to the claimed ε."""

    data: DataConfig = field(default=AUDIT_DATA)
    """Dataset, partition and split options (default: one client with every record; client 0 is audited)."""
    privacy: PrivacyConfig = field(default=AUDIT_PRIVACY)
    """Differential-privacy options (default: ``train``'s with --privacy.max-records 8192; the bound
    must be at least the audited client's train records plus the canaries)."""
    training: TrainingConfig = field(default=AUDIT_TRAINING)
    """Federated schedule of the audited run (default: 10 rounds of one local epoch)."""
    algorithm: MethodName = DEFAULT_METHOD
    """Method to audit (one record each in fedsim.algorithms.registry); its options are --<method>.*."""
    target: Literal["auto", "gradient", "statistics"] = "auto"
    """What to audit: ``gradient``, the client's DP-SGD (any DP-SGD method); ``statistics``, its
    Gaussian release of class statistics (fedhypevae's statistics, dp-stats); ``auto``
    (default): ``gradient`` when the client trains by DP-SGD, else ``statistics`` (e.g.
    FedHypeVAE's default statistics-first training, which spends the whole budget on its
    one release)."""
    seed: int = 0
    """The run's one seed (data, model, canary coordinates and inclusion bits); the DP noise
    is from the OS's secure generator unless --privacy.reproducible-noise."""
    canaries: int = 1000
    """Number m of canaries, each included with probability ½: Dirac gradient canaries on distinct
    coordinates of the released parameters (``gradient``), or records R·e_k on distinct (class,
    coordinate) pairs (``statistics``, at most classes × dimensions)."""
    beta: float = 0.05
    """Significance level β: with probability ≥ 1 − β an (ε, δ)-DP client yields ε_lb ≤ ε."""
    out: Path | None = None
    """Directory for audit.json and scores.png (default: audits/<algorithm>-eps<ε>-<UTC time>)."""
    threads: int = 1
    """torch threads in this process (0 = all cores).  Default 1: one audited step is a small
    per-record-gradient computation (a Poisson batch of ~40 records), and a second thread costs
    more in synchronisation than it gains (measured on 2 shared cores, one FedHypeVAE round, whole
    process: 46 s wall / 29 s CPU with 1 thread, 316 s wall / 171 s CPU with 2)."""

    def method_config(self):
        """The frozen config of the audited algorithm."""
        return getattr(self, method(self.algorithm).field)

    def validate(self, prefix: str = "--") -> None:
        """Check every option before any work starts (``UserError`` naming the first invalid one)."""
        method(self.algorithm, prefix + "algorithm")
        self.validate_federation(prefix)
        check(self, prefix, [
            ("canaries", self.canaries >= 2, "an integer >= 2"),
            ("beta", 0 < self.beta < 1, "a number in (0, 1)"),
            ("target", self.target in ("auto", "gradient", "statistics"), "one of auto, gradient, statistics"),
            ("threads", self.threads >= 0, "an integer >= 0 (0 = all cores)"),
        ])

    def execute(self) -> int:
        from fedsim.audit.report import audit_and_report

        audit_and_report(self)
        return 0
