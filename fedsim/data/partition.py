r"""Client partitions of a dataset: IID, Dirichlet(α) label skew, or one client per site.

Every partition returns one sorted ``int64`` index array per client; the arrays
are disjoint and together cover ``0 … n−1`` exactly once.

Dirichlet label skew (the standard federated-learning benchmark scheme, also the
reference protocol's): for every class ``c`` with ``n_c`` records, draw client
shares ``p^{(c)} ~ Dirichlet(α·1_m)``, shuffle the class's indices and cut them
at ``⌊cumsum(p^{(c)}) · n_c⌋``, so client ``j`` receives about ``p_j^{(c)} n_c``
records of class ``c``.  Large α (→ ∞) gives every client the global label mix;
small α (e.g. 0.05) gives each client only a few classes.  The whole draw is
repeated until every client holds at least ``min_samples`` records.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fedsim.errors import UserError
from fedsim.seeding import as_rng, numpy_rng

SCHEMES = ("iid", "dirichlet", "site")


def _check_clients(n: int, num_clients: int) -> None:
    if not 1 <= num_clients <= n:
        raise UserError(
            f"--data.num-clients is {num_clients}; it must be between 1 and the number of records ({n})."
        )


def _finish(parts: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def partition_iid(n: int, num_clients: int, rng: np.random.Generator | int) -> list[np.ndarray]:
    """Shuffle ``0 … n−1`` and cut it into ``num_clients`` near-equal parts (sizes differ by ≤ 1)."""
    _check_clients(n, num_clients)
    return _finish(np.array_split(as_rng(rng).permutation(n), num_clients))


def partition_dirichlet(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    min_samples: int,
    rng: np.random.Generator | int,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Dirichlet(α) label-skew partition (see module docstring), ≥ ``min_samples`` per client."""
    labels = np.asarray(labels)
    n = len(labels)
    _check_clients(n, num_clients)
    if not (np.isfinite(alpha) and alpha > 0):
        raise UserError(f"--data.alpha is {alpha!r}; it must be a number > 0 (e.g. 0.3).")
    if min_samples < 0:
        raise UserError(f"--data.min-samples is {min_samples}; it must be an integer ≥ 0.")
    if num_clients * min_samples > n:
        raise UserError(
            f"--data.min-samples {min_samples} × --data.num-clients {num_clients} exceeds the {n} records; "
            "lower one of them."
        )
    rng = as_rng(rng)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    smallest = 0
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for members in by_class:
            shuffled = rng.permutation(members)
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))
            if not np.all(np.isfinite(shares)):  # underflow for tiny α: give the class to one client
                shares = np.eye(num_clients)[rng.integers(num_clients)]
            cuts = (np.cumsum(shares) * len(shuffled)).astype(np.int64)[:-1]
            for client, piece in enumerate(np.split(shuffled, cuts)):
                parts[client].append(piece)
        sizes = [sum(len(p) for p in pieces) for pieces in parts]
        smallest = min(sizes)
        if smallest >= min_samples:
            return _finish([np.concatenate(pieces) for pieces in parts])
    raise UserError(
        f"the Dirichlet partition (alpha={alpha}, {num_clients} clients) left a client with only {smallest} "
        f"records, fewer than --data.min-samples {min_samples}, in all {max_tries} tries; "
        "lower --data.min-samples or --data.num-clients, or raise --data.alpha."
    )


def partition_by_site(sites: np.ndarray | None) -> list[np.ndarray]:
    """One client per distinct site, in sorted order of the site names."""
    if sites is None:
        raise UserError(
            "--data.partition site needs a 'site' column, but the dataset has none; "
            "use --data.partition iid or dirichlet, or add a site column to the file."
        )
    names = np.asarray([str(s) for s in np.asarray(sites).tolist()])
    unique, inverse = np.unique(names, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return _finish(np.split(order, np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]))


def site_names(sites: np.ndarray) -> list[str]:
    """The site of each client of :func:`partition_by_site` (sorted distinct names)."""
    return sorted({str(s) for s in np.asarray(sites).tolist()})


def partition(
    labels: np.ndarray,
    sites: np.ndarray | None,
    scheme: str,
    num_clients: int,
    alpha: float,
    min_samples: int,
    seed: int,
) -> list[np.ndarray]:
    """Dispatch to the partition ``scheme`` with a stream derived from ``seed``.

    ``num_clients``, ``alpha`` and ``min_samples`` are ignored where the scheme
    does not use them (``site``: one client per site; ``iid``: no α).
    """
    rng = numpy_rng(seed, "partition", scheme)
    if scheme == "iid":
        return partition_iid(len(labels), num_clients, rng)
    if scheme == "dirichlet":
        return partition_dirichlet(labels, num_clients, alpha, min_samples, rng)
    if scheme == "site":
        return partition_by_site(sites)
    raise UserError(f"--data.partition is {scheme!r}; valid are {', '.join(SCHEMES)}.")
