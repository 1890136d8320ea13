"""Options of ``python -m sweeps.privacy_utility`` (frozen dataclasses, exposed by tyro)."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fedsim.commands.federation_options import FederationOptions
from fedsim.commands.resume import results_config
from fedsim.commands.train import TrainCommand
from fedsim.errors import UserError
from fedsim.outputs import config_dict
from sweeps.grid import build_grid
from sweeps.runner import run_sweep

DEFAULT_OUT = Path("sweeps-out/privacy-utility")


@dataclass(frozen=True)
class RunOptions(FederationOptions):
    """Run the privacy–utility sweep (a Ray Tune grid, one federation per trial), then write
    results.parquet, summary.md and the plots under --out.  Rerunning the same command
    continues an interrupted sweep without rerunning finished trials.  Every trial's
    federation is built from the --data, --privacy, --training, method and --evaluation
    options; --epsilons, --alphas and --lambda-* replace the values they name."""

    out: Path = DEFAULT_OUT
    """Sweep directory: Tune state (tune/), one run directory per trial (runs/), results.parquet, rounds.parquet, summary.md, plots/."""
    methods: tuple[str, ...] | None = None
    """Methods to compare (default: every method of fedsim.algorithms.registry.METHODS, in its order)."""
    epsilons: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
    """Target ε per client (inf = no DP); replaces --privacy.epsilon.  Methods whose config says private=False run once, at inf."""
    alphas: tuple[str, ...] = ("0.1", "0.3", "1.0", "iid")
    """Dirichlet α of the label skew, or iid for the IID partition; replaces --data.partition and --data.alpha."""
    lambda_mmd: tuple[float, ...] | None = None
    """λ_MMD values for FedHypeVAE (default: the one value of --fedhypevae.lambda-mmd)."""
    lambda_v: tuple[float, ...] | None = None
    """λ_v values for FedHypeVAE (default: the one value of --fedhypevae.lambda-v)."""
    lambda_lip: tuple[float, ...] | None = None
    """λ_Lip values for FedHypeVAE (default: the one value of --fedhypevae.lambda-lip)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Run seeds (the reference protocol uses 3); plots show mean ± std over them."""
    resume: bool = True
    """Continue the sweep already in --out (finished trials are kept, errored and unfinished ones rerun); --no-resume refuses to touch an existing sweep."""
    backend: Literal["local", "ray"] = "local"
    """Clients of a trial run in-process, serially (local: one CPU per trial), or as Ray client actors inside the trial's placement group (ray)."""
    cpus_per_trial: float = 1.0
    """CPUs reserved for each trial's driver (with --backend local: the whole federation; torch uses that many threads, at least 1)."""
    cpus_per_client: float = 1.0
    """--backend ray: CPUs of each client actor's placement-group bundle (the actor runs torch with that many threads, at least 1)."""
    gpus_per_client: float = 0.0
    """--backend ray: GPUs of each client actor's bundle (0 = none)."""
    clients_per_actor: int = 1
    """--backend ray: clients hosted by one client actor (a trial's placement group has ⌈clients / this⌉ actor bundles)."""
    placement_strategy: Literal["STRICT_PACK", "PACK", "SPREAD"] = "STRICT_PACK"
    """--backend ray: Ray placement strategy of a trial's bundles; STRICT_PACK keeps a trial on one node, which checkpoints need unless --out is on storage every node sees."""
    max_concurrent: int = 0
    """Most trials running at once (0 = as many as the cluster's resources allow)."""
    num_cpus: int = 0
    """CPUs of the local Ray instance started when there is no cluster to join (0 = all cores)."""
    address: str | None = None
    """Ray cluster to join (host:port); default: RAY_ADDRESS, else the cluster `ray start` runs on this machine (the head of `ray submit`), else a new local Ray instance."""
    max_failures: int = 0
    """Retries of a failed trial before it is recorded as errored."""
    progress_interval: float = 30.0
    """Seconds between progress lines (trials done/total, ETA); one is also printed whenever a trial ends."""
    def execute(self) -> int:
        return run_sweep(self)

    def base_command(self):
        """The ``TrainCommand`` every trial starts from (dataset paths made absolute, since
        Tune runs each trial in its own working directory)."""
        data = self.data
        path = Path(data.dataset).expanduser()
        if path.suffix.lower() in (".parquet", ".npz") and not path.is_absolute():
            data = dataclasses.replace(data, dataset=str(path.resolve()))
        values = {**self.federation_options(), "data": data}
        return dataclasses.replace(TrainCommand(), **values)

    def ray_config(self):
        """The Ray runtime options of every trial with --backend ray (None with local): one
        actor per --clients-per-actor clients, each with the resources of one bundle of the
        trial's placement group, so the runtime's actor plan and the bundles agree."""
        if self.backend != "ray":
            return None
        base = self.base_command()
        ray = base.ray
        return dataclasses.replace(ray, address=None, num_cpus=0, cpus_per_actor=self.cpus_per_client,
                                   gpus_per_actor=self.gpus_per_client, clients_per_actor=self.clients_per_actor,
                                   max_actors=self.actors_per_trial())

    def actors_per_trial(self) -> int:
        """Client actors of one trial with --backend ray."""
        return math.ceil(self.data.num_clients / self.clients_per_actor)

    def grid(self):
        """The validated :class:`~sweeps.grid.Grid` (``UserError`` naming the bad option)."""
        return build_grid(self.methods, self.epsilons, self.alphas,
                          self.lambda_mmd if self.lambda_mmd is not None else (self.fedhypevae.lambda_mmd,),
                          self.lambda_v if self.lambda_v is not None else (self.fedhypevae.lambda_v,),
                          self.lambda_lip if self.lambda_lip is not None else (self.fedhypevae.lambda_lip,),
                          self.seeds, base=self.base_command())

    def validate_execution(self) -> None:
        """Check the execution options (``UserError`` naming the first bad one)."""
        if not self.cpus_per_trial > 0:
            raise UserError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial}.")
        if not self.cpus_per_client > 0:
            raise UserError(f"--cpus-per-client must be > 0, got {self.cpus_per_client}.")
        if not self.gpus_per_client >= 0:
            raise UserError(f"--gpus-per-client must be ≥ 0, got {self.gpus_per_client}.")
        if self.clients_per_actor < 1:
            raise UserError(f"--clients-per-actor must be ≥ 1, got {self.clients_per_actor}.")
        if self.max_concurrent < 0:
            raise UserError(f"--max-concurrent must be ≥ 0 (0 = no limit), got {self.max_concurrent}.")
        if self.num_cpus < 0:
            raise UserError(f"--num-cpus must be ≥ 0 (0 = all cores), got {self.num_cpus}.")
        if self.max_failures < 0:
            raise UserError(f"--max-failures must be ≥ 0, got {self.max_failures}.")
        if not self.progress_interval > 0:
            raise UserError(f"--progress-interval must be > 0 seconds, got {self.progress_interval}.")
        if self.backend == "ray" and "ray" not in train_backends():
            raise UserError("--backend ray needs fedsim's Ray actors runtime (TrainCommand backend 'ray'), "
                            f"which this installation lacks; valid here: {', '.join(train_backends())}.")

    def definition(self) -> dict:
        """What the sweep computes (the grid and every trial's base options, not how it is
        executed), JSON-ready; an existing sweep is resumed only when this is unchanged."""
        base = results_config(config_dict(self.base_command()))
        for name in ("seed", "algorithm"):  # set by each trial
            base.pop(name, None)
        values = {"grid": config_dict(self.grid()), "base": base}
        return values


def train_backends() -> tuple[str, ...]:
    """The values TrainCommand's ``backend`` option accepts in this installation."""
    return typing.get_args(typing.get_type_hints(TrainCommand)["backend"])


@dataclass(frozen=True)
class PlotOptions:
    """Redraw the plots and summary.md of a sweep from its results.parquet, without rerunning anything."""

    out: Path = DEFAULT_OUT
    """Sweep directory holding results.parquet; plots/ and summary.md are (re)written there."""

    def execute(self) -> int:
        import pandas as pd

        from sweeps.report import write_report
        from sweeps.collect import read_results

        frame = read_results(self.out / "results.parquet")
        bounds_path = self.out / "bounds.parquet"
        bounds = pd.read_parquet(bounds_path) if bounds_path.is_file() else None
        for path in write_report(frame, self.out, bounds=bounds):
            print(f"wrote {path}")
        return 0
