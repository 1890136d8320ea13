"""Built-in datasets: no download, no file needed.

* ``synthetic``      the DINOv2-like generator of :mod:`fedsim.data.synthetic`
                     (384-d, 11 classes, 10 sites by default),
* ``synthetic-organs`` the same generator at the paper's scale (:mod:`fedsim.data.organs`):
                     25,211 records (OrganSMNIST's size), 11 organ-named classes of
                     fixed sizes, 384-d (``--data.synthetic.dim 768`` for 768-d);
                     synthetic data, not medical data,
* ``digits``         scikit-learn's 8×8 handwritten digits (1797 × 64, 10 classes),
                     pixel intensities divided by 16 so that features lie in [0, 1],
* ``breast-cancer``  scikit-learn's Wisconsin breast cancer data (569 × 30, 2 classes),
                     each feature standardised by its own mean and std over the whole
                     (public, fixed) dataset: ``(x − mean) / std``.

Both scikit-learn datasets ship inside the scikit-learn package.

The generated datasets are a pure function of (name, seed, ``--data.synthetic.*``) and
each process keeps the last few it generated (:func:`generated_dataset`, arrays
read-only): the ``table`` command's runs and bounds, which all use the same data seed,
generate their dataset once per process instead of once per run.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fedsim.data.dataset import EmbeddingDataset
from fedsim.data.organs import NAME, make_synthetic_organs
from fedsim.data.synthetic import SyntheticConfig, make_synthetic
from fedsim.errors import UserError

BUILTIN_DATASETS = ("synthetic", "synthetic-organs", "digits", "breast-cancer")


def _digits() -> EmbeddingDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return EmbeddingDataset(
        x=(bunch.data / 16.0).astype(np.float32),
        y=bunch.target.astype(np.int64),
        class_names=tuple(str(c) for c in range(10)),
        name="digits",
        metadata={"source": "sklearn.datasets.load_digits", "scaling": "pixel/16"},
    )


def _breast_cancer() -> EmbeddingDataset:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float64)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return EmbeddingDataset(
        x=x.astype(np.float32),
        y=bunch.target.astype(np.int64),
        class_names=tuple(str(name) for name in bunch.target_names),
        name="breast-cancer",
        metadata={"source": "sklearn.datasets.load_breast_cancer", "scaling": "standardised (public stats)"},
    )


@functools.lru_cache(maxsize=2)
def generated_dataset(name: str, seed: int, synthetic: SyntheticConfig) -> EmbeddingDataset:
    """``synthetic`` or ``synthetic-organs`` (lower-case ``name``), generated once per process
    for each (name, seed, options) among the last two asked for; its arrays are read-only,
    so a caller that would change them in place fails instead of corrupting later runs."""
    dataset = make_synthetic_organs(synthetic, seed) if name == NAME else make_synthetic(synthetic, seed)
    for array in (dataset.x, dataset.y, dataset.site, dataset.split):
        if array is not None:
            array.flags.writeable = False
    return dataset


def is_builtin(name: str) -> bool:
    """True when ``name`` names a built-in dataset (case and surrounding spaces ignored)."""
    return str(name).strip().lower() in (*BUILTIN_DATASETS, "breast_cancer")


def load_dataset(
    name_or_path: str, seed: int, synthetic: SyntheticConfig = SyntheticConfig()
) -> EmbeddingDataset:
    """A built-in dataset by name, or an embedding file (``.parquet``/``.npz``) by path.

    ``seed`` (and ``synthetic``) matter only for ``synthetic`` and
    ``synthetic-organs``; files and the scikit-learn datasets are fixed.
    """
    name = str(name_or_path).strip()
    if not is_builtin(name) and Path(name).suffix.lower() not in (".parquet", ".npz"):
        raise UserError(
            f"--data.dataset {name!r} is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}) "
            "nor a path to a .parquet or .npz embedding file."
        )
    if name.lower() in ("synthetic", NAME):
        return generated_dataset(name.lower(), int(seed), synthetic)
    if name.lower() == "digits":
        return _digits()
    if name.lower() in ("breast-cancer", "breast_cancer"):
        return _breast_cancer()
    from fedsim.data.io import load_embeddings

    return load_embeddings(name)
