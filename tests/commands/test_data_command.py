"""The ``data`` subcommand, called directly (exit codes are tested through fedsim.run)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fedsim.commands.data import DataCommand
from fedsim.data.federation import DataConfig
from fedsim.data.io import load_embeddings
from fedsim.data.synthetic import SyntheticConfig
from fedsim.errors import UserError

SMALL = DataConfig(synthetic=SyntheticConfig(n_samples=1000, dim=8))


def test_prints_the_partition_summary(capsys):
    assert DataCommand(data=SMALL, seed=3).execute() == 0
    out = capsys.readouterr().out
    assert out.startswith("synthetic: 10 clients, 11 classes, dim 8, 1000 records")
    assert "mix" in out


def test_writes_the_partition_atomically(tmp_path, capsys):
    out = tmp_path / "runs" / "partition.parquet"
    assert DataCommand(data=SMALL, seed=3, out=out).execute() == 0
    assert "wrote 1000 records of 10 clients" in capsys.readouterr().out
    loaded = load_embeddings(out)
    assert len(loaded) == 1000 and set(loaded.split) == {"train", "val", "test"}
    assert [p.name for p in out.parent.iterdir()] == ["partition.parquet"]


def test_bad_inputs_raise_user_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, embeddings=np.ones((3, 2)), labels=np.array([0, 0, 0]))
    with pytest.raises(UserError, match=re.escape(str(bad))):
        DataCommand(data=DataConfig(dataset=str(bad))).execute()
    with pytest.raises(UserError, match=r"--out .*\.parquet"):
        DataCommand(data=SMALL, out=Path(tmp_path / "p.csv")).execute()
    assert not (tmp_path / "p.csv").exists()
