"""The global test set: a class-balanced test set pooled from all clients' test splits
(``--evaluation.test global|both``).

Each client's own test split scores its classifier where its own classes are; the
global test set scores it on every class of the federation — where sharing matters
most, on classes a client lacks locally.  Construction (:func:`global_test_set`):

* the pool is the union of the clients' **test** splits only (never train or val);
* every class present in the pool contributes the same number of records, the count
  of the rarest class in the pool (a class absent from every test split cannot be
  scored and is left out);
* the records of each class are drawn without replacement with the stream
  ``(data seed, "global-test")``, so the set is the same for every method and run
  seed of a fixed partition.

It is **simulator-side**: the driver (:func:`fedsim.simulation.run_federation`) hands it
to each client's final evaluation only, after training, the release and the
finalisation; nothing trains on it and no choice (probe, λ) reads it — they read
validation splits.  The figures are computed for every λ like the client-split test
metrics and reported at the λ chosen on validation, as ``global_acc``, ``global_bacc``
and ``global_f1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim.seeding import numpy_rng


@dataclass(frozen=True)
class GlobalTestSet:
    """The pooled class-balanced test records (module docstring)."""

    x: np.ndarray
    y: np.ndarray


def global_test_set(federation) -> GlobalTestSet:
    """The class-balanced set drawn from the union of ``federation``'s test splits."""
    x = np.concatenate([c.x_test for c in federation.clients])
    y = np.concatenate([c.y_test for c in federation.clients]).astype(np.int64)
    classes, counts = np.unique(y, return_counts=True)
    per_class = int(counts.min()) if len(counts) else 0
    rng = numpy_rng(int(federation.metadata.get("data_seed", 0)), "global-test")
    chosen = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == label), per_class, replace=False)
                                     for label in classes] or [np.empty(0, dtype=np.int64)]))
    return GlobalTestSet(x[chosen], y[chosen])
