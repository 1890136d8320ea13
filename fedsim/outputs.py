"""The run directory: every output of one run, each file written atomically.

    config.json        the resolved configuration
    metrics.parquet    one row per round (simulator-side diagnostics and ε so far)
    privacy.json       the privacy ledger (per client)
    synthetic.parquet  the released synthetic embeddings (generative methods)
    clients.parquet    per-client downstream results at the chosen λ (client test split:
                       acc/bacc/f1; simulator-side global test set: global_acc/global_bacc/global_f1)
    summary.json       acc/bacc/f1 (and global_*) mean ± std across clients, ε, privacy mode

privacy.json, summary.json and the synthetic file's metadata all carry the run's
privacy note (the ledger's, plus :func:`fedsim.privacy.coverage.run_notes`), the
neighbouring relation, the ``coverage`` of every output
(:func:`fedsim.privacy.coverage.coverage`) and the noise source (``"noise"``: ``secure (OS CSPRNG)``, or
``reproducible (seeded; NOT a DP guarantee)`` with ``--privacy.reproducible-noise``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fedsim.io_utils import write_json_atomic, write_parquet_atomic


def config_dict(config: Any) -> dict:
    """A JSON-ready dict of a (nested) frozen dataclass."""
    def clean(value):
        if isinstance(value, float) and math.isinf(value):
            return "inf"
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value
    return clean(dataclasses.asdict(config))


def write_frame(rows: list[dict], path: Path) -> None:
    """Rows of scalars as a Parquet file."""
    write_parquet_atomic(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), path)


def write_synthetic(x: np.ndarray, y: np.ndarray, path: Path, metadata: dict) -> None:
    """Synthetic embeddings in fedsim's embedding Parquet format."""
    from fedsim.data.dataset import EmbeddingDataset
    from fedsim.data.io import write_embeddings

    dataset = EmbeddingDataset(x=x.astype(np.float32), y=y.astype(np.int64), site=None, split=None,
                               class_names=metadata.pop("class_names", None), name=str(path),
                               metadata={})
    write_embeddings(path, dataset, metadata)


def write_json(obj: Any, path: Path) -> None:
    write_json_atomic(obj, path)
