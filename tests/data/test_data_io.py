"""Loading, validation and atomic writing of embedding files."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedsim.data.dataset import EmbeddingDataset
from fedsim.data.io import load_embeddings, write_embeddings
from fedsim.errors import UserError
from fedsim.io_utils import write_json_atomic, write_parquet_atomic


def _parquet(path, embedding, label, **extra):
    columns = {"embedding": embedding, "label": label, **extra}
    pq.write_table(pa.table(columns), path)
    return path


def _good_lists(n=6, d=3):
    return [[float(i + j) for j in range(d)] for i in range(n)]


def _labels(n=6):
    return [i % 2 for i in range(n)]


def _nan_row3(p):
    rows = _good_lists()
    rows[3][1] = float("nan")
    return _parquet(p, rows, _labels())


def _ragged_row2(p):
    rows = _good_lists()
    rows[2] = rows[2][:2]
    return _parquet(p, rows, _labels())


def _empty_vector_row1(p):
    rows = _good_lists()
    rows[1] = []
    return _parquet(p, pa.array(rows, type=pa.list_(pa.float32())), _labels())


def _float_label_row2(p):
    return _parquet(p, _good_lists(), [0.0, 1.0, 1.5, 0.0, 1.0, 0.0])


def _string_labels(p):
    return _parquet(p, _good_lists(), ["cat", "dog"] * 3)


def _negative_label_row4(p):
    return _parquet(p, _good_lists(), [0, 1, 0, 1, -1, 0])


def _null_label_row5(p):
    return _parquet(p, _good_lists(), pa.array([0, 1, 0, 1, 1, None], type=pa.int64()))


def _null_embedding_row0(p):
    return _parquet(p, pa.array([None] + _good_lists()[1:], type=pa.list_(pa.float64())), _labels())


def _one_class(p):
    return _parquet(p, _good_lists(), [3] * 6)


def _no_label(p):
    pq.write_table(pa.table({"embedding": _good_lists()}), p)
    return p


def _no_embedding(p):
    pq.write_table(pa.table({"vector": _good_lists(), "label": _labels()}), p)
    return p


def _empty_parquet(p):
    return _parquet(p, pa.array([], type=pa.list_(pa.float32(), 3)), pa.array([], type=pa.int64()))


def _embedding_strings(p):
    return _parquet(p, [["a", "b"]] * 6, _labels())


def _too_few_names(p):
    table = pa.table({"embedding": _good_lists(), "label": [0, 1, 2, 0, 1, 2]})
    meta = {b"fedsim.class_names": json.dumps(["a", "b"]).encode()}
    pq.write_table(table.replace_schema_metadata(meta), p)
    return p


def _garbage(p):
    p.write_bytes(b"this is not parquet")
    return p


def _npz_inf_row2(p):
    x = np.ones((5, 4), np.float32)
    x[2, 0] = np.inf
    np.savez(p, embeddings=x, labels=np.array([0, 1, 0, 1, 0]))
    return p


def _npz_length_mismatch(p):
    np.savez(p, embeddings=np.ones((5, 4)), labels=np.array([0, 1, 0, 1]))
    return p


def _npz_no_labels(p):
    np.savez(p, embeddings=np.ones((5, 4)))
    return p


def _npz_1d_embeddings(p):
    np.savez(p, embeddings=np.ones(5), labels=np.array([0, 1, 0, 1, 0]))
    return p


def _npz_zero_dim(p):
    np.savez(p, embeddings=np.ones((5, 0)), labels=np.array([0, 1, 0, 1, 0]))
    return p


def _npz_empty(p):
    np.savez(p, embeddings=np.ones((0, 4)), labels=np.zeros(0, np.int64))
    return p


def _npz_float_labels(p):
    np.savez(p, embeddings=np.ones((4, 2)), labels=np.array([0.0, 1.0, 0.25, 1.0]))
    return p


def _npz_pickled_sites(p):
    np.savez(p, embeddings=np.ones((4, 2)), labels=np.array([0, 1, 0, 1]),
             sites=np.array(["a", 1, None, "b"], dtype=object))
    return p


# (file name, writer, column named in the message or None, first bad row or None)
BAD_FILES = [
    ("nan.parquet", _nan_row3, "embedding", 3),
    ("ragged.parquet", _ragged_row2, "embedding", 2),
    ("zero_length.parquet", _empty_vector_row1, "embedding", 1),
    ("float_label.parquet", _float_label_row2, "label", 2),
    ("string_label.parquet", _string_labels, "label", 0),
    ("negative.parquet", _negative_label_row4, "label", 4),
    ("null_label.parquet", _null_label_row5, "label", 5),
    ("null_embedding.parquet", _null_embedding_row0, "embedding", 0),
    ("one_class.parquet", _one_class, "label", None),
    ("no_label.parquet", _no_label, "label", None),
    ("no_embedding.parquet", _no_embedding, "embedding", None),
    ("string_embedding.parquet", _embedding_strings, "embedding", 0),
    ("few_names.parquet", _too_few_names, "label", 2),
    ("empty.parquet", _empty_parquet, None, None),
    ("garbage.parquet", _garbage, None, None),
    ("inf.npz", _npz_inf_row2, "embeddings", 2),
    ("mismatch.npz", _npz_length_mismatch, "labels", 4),
    ("no_labels.npz", _npz_no_labels, "labels", None),
    ("flat.npz", _npz_1d_embeddings, "embeddings", None),
    ("zero_dim.npz", _npz_zero_dim, "embeddings", 0),
    ("empty.npz", _npz_empty, None, None),
    ("float_labels.npz", _npz_float_labels, "labels", 2),
    ("pickled.npz", _npz_pickled_sites, "sites", None),
]


@pytest.mark.parametrize(("name", "writer", "column", "row"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_one_sentence_naming_file_column_and_row(tmp_path, name, writer, column, row):
    path = writer(tmp_path / name)
    with pytest.raises(UserError) as caught:
        load_embeddings(path)
    message = str(caught.value)
    assert str(path) in message
    if column is not None:
        assert f"'{column}'" in message
    if row is not None:
        assert f"row {row}" in message
    assert "\n" not in message and message.endswith(".")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_embeddings(tmp_path / "nope.parquet")
    csv = tmp_path / "data.csv"
    csv.write_text("x\n")
    with pytest.raises(UserError, match=r"\.csv.*\.parquet and \.npz"):
        load_embeddings(csv)


def _dataset(n=12, d=5, with_columns=True):
    rng = np.random.default_rng(0)
    return EmbeddingDataset(
        x=rng.standard_normal((n, d)).astype(np.float32),
        y=np.arange(n, dtype=np.int64) % 3,
        site=np.array([f"s{i % 2}" for i in range(n)], dtype=object) if with_columns else None,
        split=np.array(["train", "test"] * (n // 2), dtype=object) if with_columns else None,
        class_names=("a", "b", "c") if with_columns else None,
        name="toy",
        metadata={"encoder": "dinov2_vits14", "nested": {"k": [1, 2]}},
    )


@pytest.mark.parametrize("with_columns", [True, False])
def test_parquet_round_trip(tmp_path, with_columns):
    original = _dataset(with_columns=with_columns)
    path = write_embeddings(tmp_path / "out.parquet", original, extra_metadata={"note": "hi"})
    schema = pq.read_schema(path)
    assert schema.field("embedding").type == pa.list_(pa.float32(), 5)
    assert schema.field("label").type == pa.int64()
    loaded = load_embeddings(path)
    np.testing.assert_array_equal(loaded.x, original.x)
    np.testing.assert_array_equal(loaded.y, original.y)
    assert loaded.x.dtype == np.float32 and loaded.y.dtype == np.int64
    assert loaded.class_names == original.class_names
    assert loaded.metadata == {**original.metadata, "note": "hi"}
    for column in ("site", "split"):
        expected = getattr(original, column)
        got = getattr(loaded, column)
        assert (got is None) if expected is None else list(got) == list(expected)
    assert loaded.num_classes == 3 and loaded.dim == 5 and len(loaded) == 12


def test_variable_list_and_float_whole_labels_are_accepted(tmp_path):
    path = _parquet(tmp_path / "ok.parquet", _good_lists(), [0.0, 1.0, 2.0, 0.0, 1.0, 4.0], site=[1, 1, 2, 2, 3, 3])
    loaded = load_embeddings(path)
    assert loaded.y.tolist() == [0, 1, 2, 0, 1, 4] and loaded.num_classes == 5
    assert list(loaded.site) == ["1", "1", "2", "2", "3", "3"]


def test_npz_round_trip(tmp_path):
    path = tmp_path / "d.npz"
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(path, embeddings=x, labels=np.array([0, 1, 1, 0]), sites=np.array(["a", "b", "a", "b"]),
             splits=np.array(["train", "train", "test", "test"]), class_names=np.array(["no", "yes"]))
    loaded = load_embeddings(path)
    np.testing.assert_array_equal(loaded.x, x.astype(np.float32))
    assert loaded.class_names == ("no", "yes") and list(loaded.site) == ["a", "b", "a", "b"]
    assert list(loaded.split) == ["train", "train", "test", "test"]


def test_write_embeddings_failure_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.parquet"

    def broken_write(table, where, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_embeddings(target, _dataset())
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path, monkeypatch):
    target = write_parquet_atomic(pa.table({"a": [1, 2]}), tmp_path / "m.parquet")
    monkeypatch.setattr(pq, "write_table", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_parquet_atomic(pa.table({"a": [3]}), target)
    monkeypatch.undo()
    assert pq.read_table(target)["a"].to_pylist() == [1, 2]
    assert sorted(os.listdir(tmp_path)) == ["m.parquet"]


def test_write_json_atomic(tmp_path, monkeypatch):
    path = write_json_atomic({"eps": np.float64(1.5), "path": tmp_path, "v": np.arange(2)}, tmp_path / "sub" / "l.json")
    assert json.loads(path.read_text()) == {"eps": 1.5, "path": str(tmp_path), "v": [0, 1]}
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        write_json_atomic({"x": 1}, tmp_path / "other.json")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["l.json"]
    assert not (tmp_path / "other.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_write_embeddings_requires_parquet_suffix(tmp_path):
    with pytest.raises(UserError, match=r"\.parquet"):
        write_embeddings(tmp_path / "out.npz", _dataset())
