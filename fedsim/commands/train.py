"""``python -m fedsim.run train`` (and ``python -m fedsim.run`` with no subcommand):
one federation, from data to the privacy ledger and the downstream scores."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fedsim.algorithms.registry import DEFAULT_METHOD, MethodName, method
from fedsim.backend import RayConfig
from fedsim.commands.federation_options import FederationOptions
from fedsim.device import DeviceName, check_device
from fedsim.errors import UserError
from fedsim.privacy.aggregate import check_noise_placement
from fedsim.validation import check


@dataclass(frozen=True)
class TrainCommand(FederationOptions):
    """Train one federation (FedHypeVAE by default) and evaluate it with the downstream protocol."""

    algorithm: MethodName = DEFAULT_METHOD
    """Method to run (one record each in fedsim.algorithms.registry); its options are --<method>.*."""
    seed: int = 0
    """The run's one seed; every component derives its own generator from it."""
    backend: Literal["ray", "local"] = "ray"
    """Where clients run: ``local`` (in this process, one after the other) or ``ray`` (client actors on a local or joined Ray cluster, see --ray.*); same seed, same results."""
    ray: RayConfig = RayConfig()
    """Ray runtime options (--backend ray): cluster address, CPUs/GPUs and clients per actor, round timeout, restarts."""
    device: DeviceName = "cpu"
    """Where clients and server keep models, data and DP noise: ``cpu``; ``cuda``; ``auto`` (CUDA where the process running the clients sees a GPU: with --backend ray, a client actor given a GPU share).  FedAvg, FedProx, FedLambda, DP-FedAvg and DP-FedProx only (the other methods run on the CPU); the CUDA path is untested (README, "Devices")."""
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
        return getattr(self, method(self.algorithm).field)

    def validate(self, prefix: str = "--") -> None:
        """Check every option before any work starts (``UserError`` naming the first invalid one,
        as on the CLI under ``prefix``: ``--`` for ``train``, ``--run.`` inside ``table``)."""
        method(self.algorithm, prefix + "algorithm")
        self.validate_federation(prefix)
        check_noise_placement(method(self.algorithm), self.privacy, prefix + "privacy.")
        self.ray.validate(prefix + "ray.")
        check(self, prefix, [
            ("backend", self.backend in ("ray", "local"), "one of ray, local"),
            ("checkpoint_every", self.checkpoint_every >= 0, "an integer >= 0 (0 = never)"),
            ("threads", self.threads >= 0, "an integer >= 0 (0 = all cores)"),
        ])
        # a GPU must be visible here when the clients run here or on a Ray started here
        joins_cluster = self.backend == "ray" and (self.ray.address or os.environ.get("RAY_ADDRESS"))
        check_device(self.device, method(self.algorithm).runs_on_device, self.algorithm, prefix + "device",
                     local_gpu_check=not joins_cluster)
        if self.out is not None and Path(self.out).exists() and not Path(self.out).is_dir():
            raise UserError(f"{prefix}out {str(self.out)!r} is a file; give a run directory (new or existing).")
        if self.resume is not None and not Path(self.resume).is_dir():
            raise UserError(f"{prefix}resume {str(self.resume)!r} is not a directory; give the run directory "
                            "of the run to continue.")

    def run_directory(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return Path("runs") / f"{self.algorithm}-{stamp}"
