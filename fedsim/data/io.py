"""Loading and writing embedding files (Parquet and NPZ), with validation.

Parquet layout (what :func:`write_embeddings` writes, and what
:func:`load_embeddings` reads):

* ``embedding``: one vector per row, a fixed-size list (or list) of floats,
* ``label``: integer class ``0 … K−1``,
* ``site`` (optional): acquisition site, any type, read as text,
* ``split`` (optional): the record's split in the source, read as text,
* schema metadata ``fedsim.class_names``: JSON list of class names (optional);
  every other ``fedsim.<key>`` is JSON and lands in ``metadata[<key>]``.

NPZ layout: ``embeddings`` (n, d) numeric, ``labels`` (n,) integer, optional
``sites``, ``splits``, ``class_names`` as string arrays (no pickled objects).

Every check fails with one :class:`~fedsim.errors.UserError` sentence that names
the file, the column, the first bad row and what would be valid.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedsim.data.dataset import EmbeddingDataset
from fedsim.errors import UserError
from fedsim.io_utils import write_parquet_atomic

SUFFIXES = (".parquet", ".npz")
META_PREFIX = "fedsim."
CLASS_NAMES_KEY = "fedsim.class_names"
MAX_CLASSES = 100_000
"""Largest number of classes accepted (a guard against ids used as labels)."""


def _bad(path: Path, column: str, row: int | None, problem: str, valid: str) -> UserError:
    """One-sentence error naming the file, column and first bad row."""
    where = f" row {row}" if row is not None else ""
    return UserError(f"{path}: column '{column}'{where} {problem}; {valid}.")


def _short(error: Exception) -> str:
    """The first sentence of a library error, without the path it repeats."""
    lines = str(error).strip().splitlines()
    sentence = lines[0].split(". ")[0].rstrip(".") if lines else ""
    sentence = sentence.rsplit("': ", 1)[-1]
    return sentence[:160] or type(error).__name__


# ----------------------------------------------------------------------------- checks


def _check_embeddings(path: Path, column: str, x: np.ndarray) -> np.ndarray:
    """Numeric (n, d) with d ≥ 1 and only finite values -> float32."""
    if x.dtype.kind not in "fiu":
        raise _bad(path, column, 0, f"has values of type {x.dtype}", "embeddings must be numbers")
    if x.shape[1] == 0:
        raise _bad(path, column, 0, "is an empty vector", "embeddings must have at least one value")
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x32).all(axis=1)
    if bad.any():
        raise _bad(
            path, column, int(np.argmax(bad)), "has a NaN, inf or beyond-float32 value",
            "embeddings must be finite float32 numbers",
        )
    return x32


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _check_labels(path: Path, column: str, y: np.ndarray) -> np.ndarray:
    """Whole numbers 0 ≤ y < MAX_CLASSES with at least two distinct values -> int64."""
    valid = "labels must be integers 0..K-1 (class names go in the fedsim.class_names metadata)"
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            row = int(np.argmax(bad))
            raise _bad(path, column, row, f"has the non-integer label {y[row].item()!r}", valid)
    elif y.dtype.kind not in "iu":
        raise _bad(path, column, 0, f"has the non-integer label {_item(y[0])!r}", valid)
    bad = (y < 0) | (y >= MAX_CLASSES)
    if bad.any():
        row = int(np.argmax(bad))
        raise _bad(
            path, column, row, f"has the label {y[row].item()!r}", f"labels must be integers 0..K-1 with K ≤ {MAX_CLASSES}"
        )
    labels = y.astype(np.int64)
    if len(np.unique(labels)) < 2:
        raise _bad(
            path, column, None, f"has only the single class {int(labels[0])} in all {len(labels)} rows",
            "a classification dataset needs at least 2 distinct labels",
        )
    return labels


def _check_class_names(path: Path, key: str, names: Any, labels: np.ndarray) -> tuple[str, ...]:
    if not isinstance(names, (list, tuple)) or not all(isinstance(s, str) for s in names):
        raise UserError(f"{path}: {key} is not a list of strings; give one class name per label 0..K-1.")
    top = int(np.argmax(labels))
    if len(names) <= labels[top]:
        raise UserError(
            f"{path}: {key} lists {len(names)} class names but column 'label' row {top} has label "
            f"{int(labels[top])}; give one class name per label 0..K-1."
        )
    return tuple(names)


def _check_empty(path: Path, n: int) -> None:
    if n == 0:
        raise UserError(f"{path} has no rows; an embedding file needs records of at least 2 classes.")


# ----------------------------------------------------------------------------- Parquet


def _require(path: Path, table: pa.Table, column: str, what: str) -> pa.Array:
    if column not in table.column_names:
        raise UserError(
            f"{path} has no column '{column}' (it has: {', '.join(table.column_names) or 'none'}); "
            f"fedsim needs '{column}' with {what}."
        )
    array = table.column(column).combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.null_count:
        row = int(np.argmax(array.is_null().to_numpy(zero_copy_only=False)))
        raise _bad(path, column, row, "is missing (null)", f"every row needs {what}")
    return array


def _parquet_embeddings(path: Path, array: pa.Array) -> np.ndarray:
    kind = array.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise _bad(path, "embedding", 0, f"has type {kind}", "each row must be a list of floats")
    if pa.types.is_fixed_size_list(kind):
        lengths = np.full(len(array), kind.list_size, dtype=np.int64)
    else:
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64)
    if (lengths == 0).any():
        row = int(np.argmax(lengths == 0))
        raise _bad(path, "embedding", row, "is an empty vector", "embeddings must have at least one value")
    if (lengths != lengths[0]).any():
        row = int(np.argmax(lengths != lengths[0]))
        raise _bad(
            path, "embedding", row, f"has {lengths[row]} values but row 0 has {lengths[0]}",
            "all embeddings must have the same length",
        )
    values = array.flatten()
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise _bad(path, "embedding", 0, f"holds values of type {values.type}", "embeddings must be numbers")
    if values.null_count:
        position = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False)))
        raise _bad(
            path, "embedding", position // int(lengths[0]), "has a missing (null) value",
            "embeddings must be finite float32 numbers",
        )
    flat = values.to_numpy(zero_copy_only=False)
    return _check_embeddings(path, "embedding", flat.reshape(len(array), int(lengths[0])))


def _parquet_labels(path: Path, array: pa.Array) -> np.ndarray:
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        values = array.to_numpy(zero_copy_only=False)
    else:
        values = np.asarray(array.to_pylist()[:1], dtype=object)
    return _check_labels(path, "label", values)


def _text(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.cast(array, pa.string()).to_pylist(), dtype=object)


def _load_parquet(path: Path) -> EmbeddingDataset:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path} is not a readable Parquet file ({_short(error)}).") from None
    _check_empty(path, table.num_rows)
    x = _parquet_embeddings(path, _require(path, table, "embedding", "a list of floats"))
    y = _parquet_labels(path, _require(path, table, "label", "an integer label"))
    site = _text(_require(path, table, "site", "a site name")) if "site" in table.column_names else None
    split = _text(_require(path, table, "split", "a split name")) if "split" in table.column_names else None
    class_names, metadata = None, {}
    for raw_key, raw_value in (table.schema.metadata or {}).items():
        key = raw_key.decode("utf-8", "replace")
        if not key.startswith(META_PREFIX):
            continue
        text = raw_value.decode("utf-8", "replace")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            if key == CLASS_NAMES_KEY:
                raise UserError(f"{path}: metadata {key} is not valid JSON; give a JSON list of class names.") from None
            value = text
        if key == CLASS_NAMES_KEY:
            class_names = _check_class_names(path, f"metadata {key}", value, y)
        else:
            metadata[key[len(META_PREFIX):]] = value
    return EmbeddingDataset(x, y, site, split, class_names, str(path), metadata)


# ----------------------------------------------------------------------------- NPZ


def _npz_text(path: Path, arrays: dict, key: str, n: int) -> np.ndarray | None:
    if key not in arrays:
        return None
    values = arrays[key]
    if values.ndim != 1 or len(values) != n:
        raise _bad(path, key, None, f"has shape {values.shape}", f"give one value per embedding row, shape ({n},)")
    return np.asarray([str(v) for v in values.tolist()], dtype=object)


def _load_npz(path: Path) -> EmbeddingDataset:
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a readable NPZ file (not a zip archive); write it with numpy.savez.")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError:
                    raise _bad(
                        path, key, None, "is a pickled object array",
                        "save text as a str array, e.g. np.asarray(names, dtype=str)",
                    ) from None
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to open is a bad file
        raise UserError(f"{path} is not a readable NPZ file ({_short(error)}).") from None
    for key, what in (("embeddings", "an (n, d) array"), ("labels", "an (n,) integer array")):
        if key not in arrays:
            raise UserError(
                f"{path} has no array '{key}' (it has: {', '.join(arrays) or 'none'}); fedsim needs '{key}' as {what}."
            )
    x, y = arrays["embeddings"], arrays["labels"]
    if x.ndim != 2:
        raise _bad(path, "embeddings", None, f"has shape {x.shape}", "embeddings must be a 2-D (n, d) array")
    _check_empty(path, x.shape[0])
    if y.ndim != 1:
        raise _bad(path, "labels", None, f"has shape {y.shape}", "labels must be a 1-D (n,) array")
    if len(y) != len(x):
        raise _bad(
            path, "labels", min(len(x), len(y)), f"is missing: {len(y)} labels for {len(x)} embeddings",
            "give exactly one label per embedding row",
        )
    x = _check_embeddings(path, "embeddings", x)
    y = _check_labels(path, "labels", y)
    class_names = None
    if "class_names" in arrays:
        names = arrays["class_names"]
        listed = [str(v) for v in names.tolist()] if names.ndim == 1 else None
        class_names = _check_class_names(path, "array 'class_names'", listed, y)
    site, split = _npz_text(path, arrays, "sites", len(x)), _npz_text(path, arrays, "splits", len(x))
    return EmbeddingDataset(x, y, site, split, class_names, str(path), {})


# ----------------------------------------------------------------------------- public


def load_embeddings(path: str | Path) -> EmbeddingDataset:
    """Load and validate an embedding file (``.parquet`` or ``.npz``)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"{path} has the unknown extension '{path.suffix}'; valid are .parquet and .npz.")
    if not path.is_file():
        raise UserError(f"{path} does not exist; give an existing .parquet or .npz embedding file.")
    return _load_parquet(path) if path.suffix.lower() == ".parquet" else _load_npz(path)


def dataset_table(dataset: EmbeddingDataset, extra_metadata: dict | None = None) -> pa.Table:
    """The dataset as a pyarrow Table in fedsim's Parquet layout (see module docstring)."""
    flat = pa.array(np.ascontiguousarray(dataset.x, dtype=np.float32).reshape(-1), type=pa.float32())
    columns = {
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dataset.dim),
        "label": pa.array(np.asarray(dataset.y, dtype=np.int64), type=pa.int64()),
    }
    for column in ("site", "split"):
        values = getattr(dataset, column)
        if values is not None:
            columns[column] = pa.array([str(v) for v in values.tolist()], type=pa.string())
    return pa.table(columns).replace_schema_metadata(
        metadata_bytes(dataset.class_names, {**dataset.metadata, **(extra_metadata or {})})
    )


def metadata_bytes(class_names: tuple[str, ...] | None, metadata: dict) -> dict[bytes, bytes]:
    """Parquet schema metadata: ``fedsim.class_names`` and ``fedsim.<key>`` as JSON."""
    out = {}
    if class_names is not None:
        out[CLASS_NAMES_KEY.encode()] = json.dumps(list(class_names)).encode()
    for key, value in metadata.items():
        full = key if key.startswith(META_PREFIX) else META_PREFIX + key
        out[full.encode()] = json.dumps(value, default=str).encode()
    return out


def write_embeddings(path: str | Path, dataset: EmbeddingDataset, extra_metadata: dict | None = None) -> Path:
    """Write ``dataset`` to the Parquet file ``path`` atomically; return the path."""
    path = Path(path)
    if path.suffix.lower() != ".parquet":
        raise UserError(f"{path} must end in .parquet; fedsim writes embeddings as Parquet.")
    return write_parquet_atomic(dataset_table(dataset, extra_metadata), path)
