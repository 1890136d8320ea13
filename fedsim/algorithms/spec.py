"""Public facts about a federation and the training schedule, shared by all algorithms."""

from __future__ import annotations

from dataclasses import dataclass

from fedsim.validation import check


@dataclass(frozen=True)
class FederationSpec:
    """What every party may know: sizes, classes, number of clients."""

    num_clients: int
    num_classes: int
    dim: int
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingConfig:
    """The federated schedule (tyro-exposed)."""

    rounds: int = 30
    """Communication rounds T (the paper uses 50; 30 keeps the default run near 2 minutes)."""
    local_epochs: int = 1
    """Local epochs per round (the paper uses 5); DP noise is calibrated for the steps really run."""
    batch_size: int | None = None
    """Expected Poisson batch size B of every method's local steps: sample rate q = B / --privacy.max-records with DP (q = B / n_i without), so a client of n_i records sees n_i·q records a step (default: the method's reference value, ``batch_size`` of its record in fedsim.algorithms.registry, e.g. 64 for FedHypeVAE, 128 for FedAvg, 256 for DP-CVAE and DP-CGAN)."""
    client_fraction: float = 1.0
    """Fraction of clients sampled per round (seeded; 1.0 = every client every round)."""
    synthetic_size: int = 0
    """Size of the released synthetic set written to synthetic.parquet (0 = the federation's total train size; with DP, the released DP count of it)."""

    def validate(self, prefix: str = "--training.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("rounds", self.rounds >= 1, "an integer >= 1"),
            ("local_epochs", self.local_epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size is None or self.batch_size >= 1, "an integer >= 1"),
            ("client_fraction", 0 < self.client_fraction <= 1, "a number in (0, 1]"),
            ("synthetic_size", self.synthetic_size >= 0, "an integer >= 0 (0 = the total train size)"),
        ])

    def resolved_batch_size(self) -> int:
        """``batch_size`` as clients see it: always a number, resolved by
        :class:`fedsim.algorithms.registry.RunSettings` from the method's record."""
        if self.batch_size is None:
            raise ValueError("batch_size is unresolved: clients take their schedule from RunSettings")
        return self.batch_size
