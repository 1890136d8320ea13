"""``python -m fedsim.run train`` (and ``python -m fedsim.run`` with no subcommand):
one federation, from data to the privacy ledger and the downstream scores."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.data.federation import DataConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig


@dataclass(frozen=True)
class TrainCommand:
    """Train one federation (FedHypeVAE by default) and evaluate it with the downstream protocol."""

    algorithm: Literal["fedhypevae"] = "fedhypevae"
    """Method to run."""
    data: DataConfig = DataConfig()
    """Dataset, partition and split options."""
    privacy: PrivacyConfig = PrivacyConfig()
    """Differential-privacy options (per client, sample level)."""
    training: TrainingConfig = TrainingConfig()
    """Federated schedule."""
    fedhypevae: FedHypeVAEConfig = FedHypeVAEConfig()
    """FedHypeVAE model, objective and meta-code options."""
    evaluation: EvaluationConfig = EvaluationConfig()
    """Downstream evaluation protocol."""
    seed: int = 0
    """The run's one seed; every component derives its own generator from it."""
    backend: Literal["local"] = "local"
    """Where clients run: ``local`` (in-process, serial)."""
    out: Path | None = None
    """Run directory (default: runs/<algorithm>-<UTC time>); created, files written atomically."""
    threads: int = 0
    """torch threads in this process (0 = all cores)."""
    progress: bool = True
    """Show a progress bar over rounds."""

    def execute(self) -> int:
        from fedsim.commands.training_run import run_training

        run_training(self)
        return 0

    def method_config(self):
        """The frozen config of the selected algorithm."""
        return {"fedhypevae": self.fedhypevae}[self.algorithm]

    def run_directory(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return Path("runs") / f"{self.algorithm}-{stamp}"
