"""``python -m fedsim.run table``: the paper's Table-1 protocol over methods ×
configurations (IID, Dirichlet α) × seeds, resumable, with Markdown/CSV/Parquet/PNG
outputs (orchestration in :mod:`fedsim.commands.table_run`, reports in
:mod:`fedsim.evaluation.report`)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fedsim.algorithms.registry import TABLE_METHODS, MethodName
from fedsim.algorithms.spec import TrainingConfig
from fedsim.commands.train import TrainCommand
from fedsim.data.federation import DataConfig
from fedsim.evaluation.bounds import BOUNDS

BOUND_NAMES: tuple[str, ...] = tuple(BOUNDS)
BoundName = Literal[BOUND_NAMES]  # type: ignore[valid-type]  # the CLI's choices, from fedsim.evaluation.bounds

QUICK_ROUNDS = 2
RUN_DEFAULTS = TrainCommand(backend="local", data=DataConfig(partition_seed=0), training=TrainingConfig(rounds=50))
"""The runs' options unless --run.* says otherwise: the reference protocol's 50 rounds and fixed partition
seed 0, and the local backend (runs are small and start no Ray session each)."""
SET_BY_TABLE = (
    ("algorithm", "--methods"), ("seed", "--seeds"), ("data.partition", "--iid and --alphas"),
    ("data.alpha", "--alphas"), ("out", "--out"), ("progress", "--progress"),
    ("resume", "rerunning the table in the same --out (finished runs are reused)"),
)
"""Options of the runs that the table sets itself (each run's value), with the table option to use instead."""


@dataclass(frozen=True)
class TableCommand:
    """Run methods × {IID, Dirichlet α} × seeds and write the paper's Table 1 (ACC and
    BACC mean ± std across clients and across seeds, on each client's test split and on
    the class-balanced global test set), the bounds (not methods), the ε each method really spent,
    fidelity of the synthetic embeddings, per-client results and a bar chart.
    Rerunning the same command in the same --out skips the runs already finished."""

    methods: tuple[MethodName, ...] = TABLE_METHODS
    """Methods (table rows), in this order: by default the paper's six (the FedAvg family without DP, labelled "(no DP)") and the private rows at the same ε: dp-fedavg, dp-fedprox, dp-stats."""
    bounds: tuple[BoundName, ...] = BOUND_NAMES
    """Bounds, shown apart as reference rows, not methods (empty: none): local-only (no sharing), pooled-real (real pooled records instead of synthetic ones: the non-private ceiling of any generator), centralised (one probe on the union of train splits).  Computed once per configuration × seed."""
    iid: bool = True
    """Include the IID configuration."""
    alphas: tuple[float, ...] = (0.3,)
    """Dirichlet label-skew configurations, one per α (empty: none)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Run seeds (the data are fixed by --run.data.partition-seed, 0 here, as in the reference protocol)."""
    ablations: bool = False
    """Add FedHypeVAE ablation rows: without hypernetwork, without MMD, without meta-code, and the paper privacy mode."""
    quick: bool = False
    """Smoke-run preset: at most 2 rounds and the first seed only (a separate default --out)."""
    out: Path | None = None
    """Table directory (default: runs/table-<dataset>[-quick]); finished runs in it are reused."""
    progress: bool = True
    """Show a progress bar over runs with an ETA."""
    jobs: int | Literal["auto"] = "auto"
    """Runs in parallel, each in its own worker process with its share of the CPUs as torch threads (--run.threads, or CPUs ÷ jobs when that is 0); results are the same as with 1 when --run.threads is fixed.  auto: CPUs ÷ --run.threads (one run per CPU when it is 0), 1 with --run.backend ray; 1: every run in this process, one after the other."""
    run: TrainCommand = RUN_DEFAULTS
    """Every option of the runs: dataset (--run.data.dataset), clients (--run.data.num-clients), rounds (--run.training.rounds, 50 here), ε, δ and C (--run.privacy.*), method models, evaluation, threads, backend (local here).  The table sets each run's algorithm, seed, partition and α itself."""

    def effective_rounds(self) -> int:
        rounds = self.run.training.rounds
        return min(rounds, QUICK_ROUNDS) if self.quick else rounds

    def effective_seeds(self) -> tuple[int, ...]:
        return self.seeds[:1] if self.quick else self.seeds

    def table_directory(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        dataset = self.run.data.dataset
        stem = Path(dataset).stem if Path(dataset).suffix else dataset
        return Path("runs") / f"table-{stem}{'-quick' if self.quick else ''}"

    def validate(self) -> None:
        """Check the table's options and every option of its runs before any work starts."""
        from fedsim.commands.worker_pool import check_jobs
        from fedsim.errors import UserError

        if not self.methods:
            raise UserError("--methods is empty; give at least one of " + ", ".join(TABLE_METHODS) + ".")
        if not self.iid and not self.alphas:
            raise UserError("no configuration to run: pass --iid or at least one --alphas value.")
        if not self.seeds:
            raise UserError("--seeds is empty; give at least one run seed.")
        if (len(set(self.seeds)) != len(self.seeds) or len(set(self.methods)) != len(self.methods)
                or len(set(self.bounds)) != len(self.bounds)):
            raise UserError("--seeds, --methods and --bounds must not repeat a value.")
        for name in self.bounds:
            if name not in BOUND_NAMES:
                raise UserError(f"--bounds {name!r} is unknown; valid: {', '.join(BOUND_NAMES)}.")
        for alpha in self.alphas:
            if not (alpha > 0 and alpha != float("inf")):
                raise UserError(f"--alphas has {alpha!r}; every Dirichlet α must be a finite number > 0.")
        if self.ablations and "fedhypevae" not in self.methods:
            raise UserError("--ablations varies FedHypeVAE; add fedhypevae to --methods.")
        for path, owner in SET_BY_TABLE:
            value = operator.attrgetter(path)(self.run)
            if value != operator.attrgetter(path)(RUN_DEFAULTS):
                option = "--run." + path.replace("_", "-")
                raise UserError(f"{option} {value} conflicts with the table, which sets it for every run; "
                                f"drop {option} and use {owner}.")
        self.run.validate("--run.")
        check_jobs(self.jobs, "--jobs")
        if self.jobs not in ("auto", 1) and self.run.backend == "ray":
            raise UserError(f"--jobs {self.jobs} runs the table's runs in parallel processes, each with the local "
                            "backend; drop --run.backend ray or use --jobs 1.")

    def execute(self) -> int:
        from fedsim.commands.table_run import run_table

        run_table(self)
        return 0
