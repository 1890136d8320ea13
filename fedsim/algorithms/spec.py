"""Public facts about a federation and the training schedule, shared by all algorithms."""

from __future__ import annotations

from dataclasses import dataclass


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
    batch_size: int = 64
    """Expected Poisson batch size B: sample rate q = B / n_i per client."""
    client_fraction: float = 1.0
    """Fraction of clients sampled per round (seeded; 1.0 = every client every round)."""
    synthetic_size: int = 0
    """Size of the released synthetic set written to synthetic.parquet (0 = the federation's total train size)."""

    def validate(self) -> None:
        from fedsim.errors import UserError

        if self.rounds < 1:
            raise UserError(f"--training.rounds must be >= 1, got {self.rounds}.")
        if self.local_epochs < 1:
            raise UserError(f"--training.local-epochs must be >= 1, got {self.local_epochs}.")
        if self.batch_size < 1:
            raise UserError(f"--training.batch-size must be >= 1, got {self.batch_size}.")
        if not 0 < self.client_fraction <= 1:
            raise UserError(f"--training.client-fraction must be in (0, 1], got {self.client_fraction}.")
        if self.synthetic_size < 0:
            raise UserError(f"--training.synthetic-size must be >= 0, got {self.synthetic_size}.")
