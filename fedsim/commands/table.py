"""``python -m fedsim.run table``: the paper's Table-1 protocol over methods ×
configurations (IID, Dirichlet α) × seeds, resumable, with Markdown/CSV/Parquet/PNG
outputs (orchestration in :mod:`fedsim.commands.table_run`, reports in
:mod:`fedsim.evaluation.report`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsim.commands.train import AlgorithmName, TrainCommand

PAPER_METHODS: tuple[AlgorithmName, ...] = ("fedavg", "fedprox", "fedlambda", "dp-cgan", "dp-cvae", "fedhypevae")
QUICK_ROUNDS = 2


@dataclass(frozen=True)
class TableCommand:
    """Run methods × {IID, Dirichlet α} × seeds and write the paper's Table 1 (ACC and
    BACC mean ± std across clients and across seeds), the ε each method really spent,
    fidelity of the synthetic embeddings, per-client results and a bar chart.
    Rerunning the same command in the same --out skips the runs already finished."""

    dataset: str = "synthetic"
    """Built-in dataset (synthetic, synthetic-organs, digits, breast-cancer) or path to a .parquet/.npz embedding file."""
    methods: tuple[AlgorithmName, ...] = PAPER_METHODS
    """Methods (table rows), in this order."""
    iid: bool = True
    """Include the IID configuration."""
    alphas: tuple[float, ...] = (0.3,)
    """Dirichlet label-skew configurations, one per α (empty: none)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Run seeds (the partition is fixed by --partition-seed, as in the reference protocol)."""
    num_clients: int = 10
    """Number of clients of every configuration."""
    rounds: int = 50
    """Communication rounds of every run."""
    epsilon: float = 1.0
    """Target ε per client of the private methods (FedAvg/FedProx/FedLambda run without DP unless --run.fedavg.private etc.)."""
    delta: float = 1e-4
    """Target δ per client."""
    clip_norm: float = 1.5
    """DP-SGD clipping bound C."""
    partition_seed: int = 0
    """Seed of the data (synthetic generation, partition, splits), fixed across run seeds."""
    ablations: bool = False
    """Add FedHypeVAE ablation rows: without hypernetwork, without MMD, without meta-code, and the paper privacy mode."""
    quick: bool = False
    """Smoke-run preset: 2 rounds and the first seed only (a separate default --out)."""
    out: Path | None = None
    """Table directory (default: runs/table-<dataset>[-quick]); finished runs in it are reused."""
    progress: bool = True
    """Show a progress bar over runs with an ETA."""
    run: TrainCommand = TrainCommand(backend="local")
    """Every other option of the runs (method models, schedule, evaluation, privacy accountant, threads, backend — local by default here: runs are small and start no Ray session each); the table sets the algorithm, seed, dataset, partition, α, clients, rounds, ε, δ and C itself."""

    def effective_rounds(self) -> int:
        return min(self.rounds, QUICK_ROUNDS) if self.quick else self.rounds

    def effective_seeds(self) -> tuple[int, ...]:
        return self.seeds[:1] if self.quick else self.seeds

    def table_directory(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        stem = Path(self.dataset).stem if Path(self.dataset).suffix else self.dataset
        return Path("runs") / f"table-{stem}{'-quick' if self.quick else ''}"

    def validate(self) -> None:
        from fedsim.errors import UserError

        if not self.methods:
            raise UserError("--methods is empty; give at least one of " + ", ".join(PAPER_METHODS) + ".")
        if not self.iid and not self.alphas:
            raise UserError("no configuration to run: pass --iid or at least one --alphas value.")
        if not self.seeds:
            raise UserError("--seeds is empty; give at least one run seed.")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.methods)) != len(self.methods):
            raise UserError("--seeds and --methods must not repeat a value.")
        if self.ablations and "fedhypevae" not in self.methods:
            raise UserError("--ablations varies FedHypeVAE; add fedhypevae to --methods.")

    def execute(self) -> int:
        from fedsim.commands.table_run import run_table

        run_table(self)
        return 0
