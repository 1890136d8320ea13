"""Atomic file writes: nothing half-written is ever left behind.

Every writer writes to a temporary name in the destination's directory (same
file system, so the final :func:`os.replace` is an atomic rename) and renames it
into place only after the write succeeded.  On any error, including
``KeyboardInterrupt``, the temporary file is removed and the old destination (if
any) is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import pyarrow as pa


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The parent directory is created if needed.  The temporary name starts with a
    dot and ends with ``.tmp`` so that globbing for results never picks it up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_parquet_atomic(table: "pa.Table", path: str | Path) -> Path:
    """Write a pyarrow ``table`` to the Parquet file ``path`` atomically; return the path."""
    import pyarrow.parquet as pq

    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_json_atomic(obj: Any, path: str | Path, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, trailing newline) to ``path`` atomically; return the path.

    Objects JSON does not know (paths, NumPy scalars, tuples inside dataclasses,
    ...) are written via ``str`` or ``.item()`` rather than failing halfway.
    """
    path = Path(path)
    text = json.dumps(obj, indent=indent, default=_json_default) + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def _json_default(value: Any) -> Any:
    """Fallback encoder: NumPy scalars/arrays to Python values, anything else to str."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)
