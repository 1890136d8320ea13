"""From a dataset to a federation: partition among clients, split, (optionally) standardise.

Pipeline of :func:`build_federation` (the reference evaluation protocol):

1. The file's official ``split`` column, if any, is **pooled**: like the
   reference protocol, fedsim pools the official train/test splits and then
   re-splits per client, so the column is kept as information only.
2. Records are partitioned among clients (:mod:`fedsim.data.partition`).
3. Each client's records are split, stratified by class, into train/val/test
   (:mod:`fedsim.data.splits`; defaults 64/16/20).
4. Optionally (``standardize="pooled-train"``) every feature is mapped to
   ``(x − μ) / σ`` with ``μ, σ`` the per-feature mean and std of the union of all
   clients' **train** splits.  Val and test records are transformed with those
   statistics but never contribute to them.

Seeds: the data seed is ``partition_seed`` (or the run seed when it is None);
the partition uses the stream ``(data seed, "partition", scheme)`` and client
``i``'s split the stream ``(data seed, "split", i)``, so they are independent
and a fixed partition seed fixes the data across run seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from fedsim.data.dataset import EmbeddingDataset
from fedsim.data.synthetic import SyntheticConfig
from fedsim.errors import UserError
from fedsim.seeding import numpy_rng
from fedsim.validation import check

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SPLITS = ("train", "val", "test")
HEAT = " .:-=+*#%@"
PartitionScheme = Literal["iid", "dirichlet", "site"]
"""How records are shared among clients (``--data.partition``)."""


@dataclass(frozen=True)
class DataConfig:
    """Which data, how it is shared among clients, and how each client splits it."""

    dataset: str = "synthetic"
    """Built-in dataset (synthetic, synthetic-organs, digits, breast-cancer) or path to a .parquet/.npz embedding file."""
    partition: PartitionScheme = "dirichlet"
    """How records are shared among clients: iid, dirichlet (label skew with --data.alpha), or site (one client per value of the file's site column)."""
    alpha: float = 0.3
    """Dirichlet concentration α of the label skew: small = few classes per client, large = IID-like."""
    num_clients: int = 10
    """Number of clients (ignored by --data.partition site, which makes one client per site)."""
    min_samples: int = 20
    """Dirichlet partition: redraw until every client holds at least this many records."""
    test_fraction: float = 0.2
    """Share of each client's records (per class) held out as its test split."""
    val_fraction: float = 0.2
    """Share of each client's remaining records (per class) used as its validation split."""
    partition_seed: int | None = None
    """Seed of the data (synthetic generation, partition, splits); None uses the run seed (the reference protocol fixes it across run seeds)."""
    standardize: Literal["none", "pooled-train"] = "none"
    """pooled-train: scale features by the mean/std of all clients' train splits — a simulation convenience NOT covered by DP (test rows never enter the statistics)."""
    synthetic: SyntheticConfig = SyntheticConfig()
    """Options of the built-in synthetic datasets (synthetic-organs fixes n-samples, num-classes and imbalance)."""

    def check_dataset(self, prefix: str = "--data.") -> None:
        """Raise a UserError unless ``dataset`` names a built-in dataset or an existing embedding file
        (a separate check: :func:`build_federation` takes the records themselves)."""
        from fedsim.data.builtin import BUILTIN_DATASETS, is_builtin

        if not is_builtin(self.dataset):
            path = Path(self.dataset).expanduser()
            if path.suffix.lower() not in (".parquet", ".npz") or not path.is_file():
                raise UserError(f"{prefix}dataset {self.dataset!r} is neither a built-in dataset "
                                f"({', '.join(BUILTIN_DATASETS)}) nor an existing .parquet or .npz embedding file.")

    def validate(self, prefix: str = "--data.") -> None:
        """Raise a UserError naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("partition", self.partition in ("iid", "dirichlet", "site"), "one of iid, dirichlet, site"),
            ("alpha", np.isfinite(self.alpha) and self.alpha > 0, "a number > 0 (e.g. 0.3)"),
            ("num_clients", self.num_clients >= 1, "an integer >= 1"),
            ("min_samples", self.min_samples >= 0, "an integer >= 0"),
            *((name, np.isfinite(getattr(self, name)) and 0 <= getattr(self, name) < 1, "a number in [0, 1)")
              for name in ("test_fraction", "val_fraction")),
            ("standardize", self.standardize in ("none", "pooled-train"), "one of none, pooled-train"),
        ])
        self.synthetic.validate(prefix + "synthetic.")


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's records, split into train/val/test."""

    client_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    site: str | None = None

    @property
    def n_train(self) -> int:
        """Number of training records n_i (private with DP: plans and weights use --privacy.max-records or DP counts)."""
        return len(self.y_train)

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return int(self.x_train.shape[1])

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``split`` ('train', 'val' or 'test')."""
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}")

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Records per class in ``split``, shape (num_classes,)."""
        return np.bincount(self.arrays(split)[1], minlength=self.num_classes)


@dataclass(frozen=True, eq=False)
class Federation:
    """All clients of one simulation and what they share publicly."""

    clients: tuple[ClientData, ...]
    num_classes: int
    dim: int
    class_names: tuple[str, ...]
    dataset_name: str
    metadata: dict = field(default_factory=dict)

    @property
    def num_clients(self) -> int:
        return len(self.clients)


def build_federation(dataset: EmbeddingDataset, cfg: DataConfig, seed: int) -> Federation:
    """Partition, split and optionally standardise ``dataset`` (see module docstring)."""
    from fedsim.data.partition import partition, site_names
    from fedsim.data.splits import stratified_split

    cfg.validate()
    data_seed = cfg.partition_seed if cfg.partition_seed is not None else seed
    parts = partition(
        dataset.y, dataset.site, cfg.partition, cfg.num_clients, cfg.alpha, cfg.min_samples, data_seed
    )
    sites: Sequence[str | None] = [None] * len(parts)
    if cfg.partition == "site":
        assert dataset.site is not None  # partition() refused a site partition without sites
        sites = site_names(dataset.site)
    k = dataset.num_classes
    raw = []
    for i, (index, site) in enumerate(zip(parts, sites)):
        positions = stratified_split(dataset.y[index], cfg.test_fraction, cfg.val_fraction, numpy_rng(data_seed, "split", i))
        chosen = [index[p] for p in positions]
        for split, rows, fraction in zip(SPLITS, chosen, (1.0, cfg.val_fraction, cfg.test_fraction)):
            if fraction > 0 and len(rows) == 0:
                where = f" (site {site!r})" if site is not None else ""
                raise UserError(
                    f"client {i}{where} has only {len(index)} records, too few for a non-empty {split} split; "
                    "raise --data.min-samples or lower --data.num-clients."
                )
        raw.append(chosen)
    mean, std = np.zeros(dataset.dim), np.ones(dataset.dim)
    if cfg.standardize == "pooled-train":
        mean, std = pooled_train_stats(dataset.x, [c[0] for c in raw])

    def features(rows: np.ndarray) -> np.ndarray:
        x = dataset.x[rows]
        if cfg.standardize == "pooled-train":
            x = (x - mean) / std
        return np.ascontiguousarray(x, dtype=np.float32)

    clients = tuple(
        ClientData(
            client_id=i,
            **{f"x_{s}": features(rows) for s, rows in zip(SPLITS, chosen)},
            **{f"y_{s}": dataset.y[rows].astype(np.int64) for s, rows in zip(SPLITS, chosen)},
            num_classes=k,
            site=site,
        )
        for i, (chosen, site) in enumerate(zip(raw, sites))
    )
    metadata = {"data_config": asdict(cfg), "data_seed": int(data_seed), **dataset.metadata}
    return Federation(clients, k, dataset.dim, dataset.names(), dataset.name, metadata)


def pooled_train_stats(x: np.ndarray, train_rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (population, float64) over the union of the train rows; std 0 -> 1."""
    pooled = x[np.concatenate(train_rows)].astype(np.float64)
    mean, std = pooled.mean(axis=0), pooled.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def load_federation(cfg: DataConfig, seed: int) -> Federation:
    """Load ``cfg.dataset`` (seeded by the data seed) and build its federation."""
    from fedsim.data.builtin import load_dataset

    data_seed = cfg.partition_seed if cfg.partition_seed is not None else seed
    return build_federation(load_dataset(cfg.dataset, data_seed, cfg.synthetic), cfg, seed)


def _heat(counts: np.ndarray) -> str:
    """One character per class by share p of the client's records: level ⌈9·√p⌉ of ' .:-=+*#%@'.

    The square root spreads small shares apart: 1 % → '.', 2 % → ':', 10 % → '-', 25 % → '+',
    50 % → '#', 100 % → '@'.
    """
    total = counts.sum()
    if total == 0:
        return " " * len(counts)
    shares = counts / total
    levels = np.where(counts > 0, np.clip(np.ceil(np.sqrt(shares) * 9), 1, 9), 0).astype(int)
    return "".join(HEAT[level] for level in levels)


def partition_summary(federation: Federation) -> str:
    """Per-client split sizes, per-class record counts and a text heat map of the label mix."""
    k = federation.num_classes
    show_counts = k <= 20
    totals = [sum((c.class_counts(s) for s in SPLITS), np.zeros(k, dtype=np.int64)) for c in federation.clients]
    width = max(4, len(str(max(int(t.max()) for t in totals)))) if totals else 4
    site_w = max([4] + [len(c.site) for c in federation.clients if c.site])
    head = f"{'client':>6} {'site':<{site_w}} {'train':>6} {'val':>5} {'test':>5}"
    if show_counts:
        head += " |" + "".join(f"{c:>{width + 1}}" for c in range(k))
    lines = [
        f"{federation.dataset_name}: {federation.num_clients} clients, {k} classes, dim {federation.dim}, "
        f"{sum(int(t.sum()) for t in totals)} records",
        head + " | mix",
    ]
    for client, total in zip(federation.clients, totals):
        row = (
            f"{client.client_id:>6} {client.site or '-':<{site_w}} {client.n_train:>6} "
            f"{len(client.y_val):>5} {len(client.y_test):>5}"
        )
        if show_counts:
            row += " |" + "".join(f"{int(v):>{width + 1}}" for v in total)
        lines.append(row + " | " + _heat(total))
    overall = np.sum(totals, axis=0) if totals else np.zeros(k, int)
    lines.append(f"{'all':>6} {'':<{site_w}} {'':>6} {'':>5} {'':>5}"
                 + (" |" + "".join(f"{int(v):>{width + 1}}" for v in overall) if show_counts else "")
                 + " | " + _heat(overall))
    lines.append(f"mix: one character per class by share p of the client's records, level ⌈9·√p⌉ of '{HEAT}'")
    lines.append("classes: " + ", ".join(f"{i}={name}" for i, name in enumerate(federation.class_names)))
    return "\n".join(lines)


def _rows(federation: Federation):
    for client in federation.clients:
        for split in SPLITS:
            x, y = client.arrays(split)
            yield client, split, x, y


def federation_to_frame(federation: Federation) -> "pd.DataFrame":
    """One row per record: ``client, split, label, site, embedding`` (a float32 array)."""
    import pandas as pd

    frames = [
        pd.DataFrame({
            "client": np.full(len(y), client.client_id, dtype=np.int64),
            "split": np.full(len(y), split, dtype=object),
            "label": y.astype(np.int64),
            "site": np.full(len(y), client.site, dtype=object),
            "embedding": list(x),
        })
        for client, split, x, y in _rows(federation)
    ]
    return pd.concat(frames, ignore_index=True)


def federation_table(federation: Federation, extra_metadata: dict | None = None) -> "pa.Table":
    """The partitioned data in fedsim's Parquet layout plus ``client`` (and ``site`` when known).

    Loading the written file with :func:`fedsim.data.io.load_embeddings` gives the
    pooled records back (its ``split`` column is informational, like any file's).
    """
    import pyarrow as pa

    from fedsim.data.io import dataset_table

    pieces = list(_rows(federation))
    has_site = all(c.site is not None for c in federation.clients)
    pooled = EmbeddingDataset(
        x=np.concatenate([x for *_, x, _ in pieces]) if pieces else np.zeros((0, federation.dim), np.float32),
        y=np.concatenate([y for *_, y in pieces]).astype(np.int64),
        site=np.concatenate([np.full(len(y), c.site, dtype=object) for c, _, _, y in pieces]) if has_site else None,
        split=np.concatenate([np.full(len(y), s, dtype=object) for _, s, _, y in pieces]),
        class_names=federation.class_names,
        name=federation.dataset_name,
        metadata={"dataset": federation.dataset_name, **federation.metadata},
    )
    table = dataset_table(pooled, extra_metadata)
    clients = np.concatenate([np.full(len(y), c.client_id, dtype=np.int64) for c, _, _, y in pieces])
    return table.add_column(0, "client", pa.array(clients, type=pa.int64()))
