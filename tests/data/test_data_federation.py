"""From a dataset to a federation: splits, seeds, standardisation, summaries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedsim.data.dataset import EmbeddingDataset
from fedsim.data.federation import (
    DataConfig,
    build_federation,
    federation_table,
    federation_to_frame,
    load_federation,
    partition_summary,
)
from fedsim.data.io import load_embeddings
from fedsim.data.synthetic import SyntheticConfig
from fedsim.errors import UserError
from fedsim.io_utils import write_parquet_atomic

SMALL = DataConfig(synthetic=SyntheticConfig(n_samples=1500, dim=16, num_sites=4))


def _indexed_dataset(n=1200, d=4, k=5):
    """Feature 0 is the record's row number, so records can be traced through the federation."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[:, 0] = np.arange(n)
    return EmbeddingDataset(x=x, y=rng.integers(0, k, n).astype(np.int64), name="indexed")


def _rows(federation, split):
    return np.concatenate([c.arrays(split)[0][:, 0] for c in federation.clients]).astype(np.int64)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "site"])
def test_every_record_lands_in_exactly_one_client_split(scheme):
    federation = load_federation(replace(SMALL, partition=scheme), seed=0)
    assert federation.num_classes == 11 and federation.dim == 16
    assert federation.num_clients == (4 if scheme == "site" else 10)
    total = sum(len(c.y_train) + len(c.y_val) + len(c.y_test) for c in federation.clients)
    assert total == 1500
    for client in federation.clients:
        assert client.x_train.dtype == np.float32 and client.y_train.dtype == np.int64
        assert client.n_train > 0 and len(client.y_val) > 0 and len(client.y_test) > 0
        assert client.dim == 16 and client.num_classes == 11
        assert (client.site is not None) == (scheme == "site")


def test_records_are_traceable_and_split_about_64_16_20():
    dataset = _indexed_dataset()
    federation = build_federation(dataset, DataConfig(dataset="indexed", partition="iid"), seed=0)
    rows = np.concatenate([_rows(federation, s) for s in ("train", "val", "test")])
    assert np.array_equal(np.sort(rows), np.arange(len(dataset)))
    for client in federation.clients:
        n = client.n_train + len(client.y_val) + len(client.y_test)
        assert abs(len(client.y_test) / n - 0.2) < 0.05 and abs(len(client.y_val) / n - 0.16) < 0.05
        np.testing.assert_array_equal(dataset.y[client.x_train[:, 0].astype(int)], client.y_train)


def test_partition_seed_fixes_the_data_across_run_seeds():
    fixed = replace(SMALL, partition_seed=123)
    a, b = load_federation(fixed, seed=0), load_federation(fixed, seed=1)
    for ca, cb in zip(a.clients, b.clients):
        np.testing.assert_array_equal(ca.x_test, cb.x_test)
        np.testing.assert_array_equal(ca.y_train, cb.y_train)
    c, d = load_federation(SMALL, seed=0), load_federation(SMALL, seed=1)
    assert any(len(x.y_train) != len(y.y_train) for x, y in zip(c.clients, d.clients))


def test_standardisation_uses_train_rows_only():
    clean = _indexed_dataset()
    cfg = DataConfig(dataset="indexed", partition="dirichlet", alpha=0.5, min_samples=30)
    plain = build_federation(clean, cfg, seed=4)
    held_out = np.concatenate([_rows(plain, "val"), _rows(plain, "test")])
    poisoned_x = clean.x.copy()
    poisoned_x[held_out, 1:] = 1e6  # val and test records: huge values
    poisoned = replace(clean, x=poisoned_x)
    scaled_clean = build_federation(clean, replace(cfg, standardize="pooled-train"), seed=4)
    scaled_poisoned = build_federation(poisoned, replace(cfg, standardize="pooled-train"), seed=4)
    train = np.concatenate([c.x_train for c in scaled_poisoned.clients]).astype(np.float64)
    np.testing.assert_allclose(train[:, 1:].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train[:, 1:].std(axis=0), 1.0, atol=1e-5)
    for a, b in zip(scaled_clean.clients, scaled_poisoned.clients):
        np.testing.assert_array_equal(a.x_train, b.x_train)
        assert np.all(b.x_test[:, 1:] > 1e4)  # held-out records are transformed, never used for the stats
    # unscaled federation = raw features
    np.testing.assert_array_equal(plain.clients[0].x_train, clean.x[plain.clients[0].x_train[:, 0].astype(int)])


def test_too_small_clients_fail_with_a_clear_message():
    dataset = _indexed_dataset(n=60)
    with pytest.raises(UserError, match=r"client \d+ has only \d+ records.*--data\.num-clients"):
        build_federation(dataset, DataConfig(partition="iid", num_clients=30), seed=0)


def test_site_partition_needs_a_site_column():
    with pytest.raises(UserError, match="site"):
        build_federation(_indexed_dataset(), DataConfig(partition="site"), seed=0)


@pytest.mark.parametrize(
    ("change", "option"),
    [({"alpha": 0.0}, "alpha"), ({"num_clients": 0}, "num-clients"), ({"test_fraction": 1.5}, "test-fraction"),
     ({"min_samples": -1}, "min-samples"), ({"standardize": "zscore"}, "standardize")],
)
def test_invalid_config_names_the_option(change, option):
    with pytest.raises(UserError, match=f"--data.{option}"):
        build_federation(_indexed_dataset(), replace(DataConfig(), **change), seed=0)


def test_summary_frame_and_table(tmp_path):
    federation = load_federation(replace(SMALL, partition="site"), seed=0)
    summary = partition_summary(federation)
    lines = summary.splitlines()
    assert lines[0].startswith("synthetic: 4 clients, 11 classes")
    assert sum(line.strip().startswith(str(i)) for line in lines for i in range(4)) >= 4
    assert "site_0" in summary and "mix" in lines[1]
    frame = federation_to_frame(federation)
    assert list(frame.columns) == ["client", "split", "label", "site", "embedding"]
    assert len(frame) == 1500 and set(frame["split"]) == {"train", "val", "test"}
    assert frame["embedding"].iloc[0].shape == (16,)
    path = write_parquet_atomic(federation_table(federation, {"seed": 0}), tmp_path / "p.parquet")
    loaded = load_embeddings(path)
    assert len(loaded) == 1500 and loaded.class_names == federation.class_names
    assert set(loaded.site) == {"site_0", "site_1", "site_2", "site_3"} and loaded.metadata["seed"] == 0


def test_heat_map_reflects_label_mix():
    x = np.zeros((200, 2), np.float32)
    y = np.array([0] * 100 + [1] * 100)
    sites = np.array(["a"] * 100 + ["b"] * 98 + ["a"] * 2, dtype=object)
    federation = build_federation(EmbeddingDataset(x=x, y=y, site=sites, name="toy"), DataConfig(partition="site"), 0)
    rows = [line for line in partition_summary(federation).splitlines() if line.strip()[:1] in "01"]
    assert rows[0].endswith("| @:") and rows[1].endswith("|  @")  # 2 % of client 0 is class 1
