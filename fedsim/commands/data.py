"""``python -m fedsim.run data``: show (and optionally write) a dataset's client partition."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsim.data.federation import DataConfig


@dataclass(frozen=True)
class DataCommand:
    """Load a dataset, partition it among clients, print the per-client class mix, optionally write it."""

    data: DataConfig = DataConfig()
    """Dataset, partition and split options."""
    seed: int = 0
    """Run seed (the data seed too, unless --data.partition-seed is set)."""
    out: Path | None = None
    """Write the partitioned records to this .parquet file (atomically); columns client, embedding, label, site, split."""

    def execute(self) -> int:
        """Build the federation, print its summary, write it when ``out`` is set; return 0."""
        from dataclasses import asdict

        from fedsim.data.federation import federation_table, load_federation, partition_summary
        from fedsim.errors import UserError
        from fedsim.io_utils import write_parquet_atomic

        if self.out is not None and Path(self.out).suffix.lower() != ".parquet":
            raise UserError(f"--out {self.out} must end in .parquet; the partition is written as Parquet.")
        federation = load_federation(self.data, self.seed)
        print(partition_summary(federation))
        if self.out is not None:
            table = federation_table(federation, {"seed": self.seed, "data_config": asdict(self.data)})
            write_parquet_atomic(table, self.out)
            print(f"wrote {table.num_rows} records of {federation.num_clients} clients to {self.out}")
        return 0
