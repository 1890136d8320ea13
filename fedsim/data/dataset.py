"""The in-memory embedding dataset.

An :class:`EmbeddingDataset` is ``n`` records ``(x_i, y_i)`` with ``x_i ∈ R^d``
(float32) and an integer label ``y_i ∈ {0, …, K−1}``, optionally with the
acquisition ``site`` of each record and the ``split`` it had in its source file.
Labels are used as given: ``K = max(y) + 1`` (or the number of class names, if
larger), so a label that never occurs is still a class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class EmbeddingDataset:
    """Embeddings with integer labels and optional site/split columns."""

    x: np.ndarray
    """float32 embeddings, shape ``(n, d)``."""
    y: np.ndarray
    """int64 labels, shape ``(n,)``, values ``0 … num_classes−1``."""
    site: np.ndarray | None = None
    """Acquisition site of each record (str/object array, shape ``(n,)``) or None."""
    split: np.ndarray | None = None
    """Split of each record in its source file (e.g. 'train'/'test'), or None."""
    class_names: tuple[str, ...] | None = None
    """Name of each class (index = label), or None."""
    name: str = ""
    """Dataset name or the path it was loaded from."""
    metadata: dict = field(default_factory=dict)
    """Free-form metadata (e.g. the encoder that produced the embeddings)."""

    def __post_init__(self) -> None:
        n = len(self.y)
        if self.x.ndim != 2 or self.y.ndim != 1 or self.x.shape[0] != n:
            raise ValueError(
                f"dataset {self.name!r}: x must be (n, d) and y (n,), got {self.x.shape} and {self.y.shape}"
            )
        for column in ("site", "split"):
            values = getattr(self, column)
            if values is not None and values.shape != (n,):
                raise ValueError(f"dataset {self.name!r}: {column} must have shape ({n},), got {values.shape}")
        if self.class_names is not None and n and len(self.class_names) <= int(self.y.max()):
            raise ValueError(
                f"dataset {self.name!r}: {len(self.class_names)} class names for labels up to {int(self.y.max())}"
            )

    @property
    def num_classes(self) -> int:
        """``K = max(label) + 1``, or the number of class names if that is larger."""
        k = int(self.y.max()) + 1 if len(self.y) else 0
        return max(k, len(self.class_names or ()))

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def names(self) -> tuple[str, ...]:
        """Class names, defaulting to ``"0" … "K-1"``."""
        return self.class_names or tuple(str(c) for c in range(self.num_classes))
