"""``python -m fedsim.run train`` (and ``python -m fedsim.run`` with no subcommand):
one federation, from data to the privacy ledger and the downstream scores."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fedsim.backend import RayConfig
from fedsim.commands.federation_options import FederationOptions

AlgorithmName = Literal["fedhypevae", "fedavg", "fedprox", "fedlambda", "dp-cvae", "dp-cgan", "dp-stats"]


@dataclass(frozen=True)
class TrainCommand(FederationOptions):
    """Train one federation (FedHypeVAE by default) and evaluate it with the downstream protocol."""

    algorithm: AlgorithmName = "fedhypevae"
    """Method to run: FedHypeVAE, or a baseline of the paper's Table 1 (FedAvg, FedProx, FedLambda, DP-CVAE, DP-CGAN), or the dp-stats floor (one DP release of class statistics, sampled as class Gaussians)."""
    seed: int = 0
    """The run's one seed; every component derives its own generator from it."""
    backend: Literal["ray", "local"] = "ray"
    """Where clients run: ``local`` (in this process, one after the other) or ``ray`` (client actors on a local or joined Ray cluster, see --ray.*); same seed, same results."""
    ray: RayConfig = RayConfig()
    """Ray runtime options (--backend ray): cluster address, CPUs/GPUs and clients per actor, round timeout, restarts."""
    checkpoint_every: int = 10
    """Write a checkpoint (server and client states, round metrics, RNG states) into the run directory every K rounds and after the last round (0 = never); --resume continues from it."""
    resume: Path | None = None
    """Continue the interrupted run in this run directory from its latest checkpoint, with its saved configuration (only runtime options such as --backend, --ray.* and --threads may change)."""
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
        return {"fedhypevae": self.fedhypevae, "fedavg": self.fedavg, "fedprox": self.fedprox,
                "fedlambda": self.fedlambda, "dp-cvae": self.dp_cvae, "dp-cgan": self.dp_cgan,
                "dp-stats": self.dp_stats}[self.algorithm]

    def run_directory(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return Path("runs") / f"{self.algorithm}-{stamp}"
