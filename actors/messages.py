"""What the actors pass around besides the algorithm's own messages.

:class:`Handle` names one element of a list held in Ray's object store: client actors
return their updates (and releases) as one list per call, and the server actor
fetches them itself, so neither Φ nor any update passes through the driver.
:class:`ClientReport` is what the driver learns of a client after a round: the
simulator-side diagnostics and the client's privacy ledger (accountant history and
ε) — no embeddings, no ψ_i, no v_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from fedsim.algorithms.base import LocalDiagnostics


@dataclass(frozen=True)
class Handle:
    """Element ``index`` of the list stored under ``ref`` (a Ray ObjectRef)."""

    ref: Any
    index: int
    client_id: int


@dataclass(frozen=True)
class ClientReport:
    """A client's report to the driver after a round (never sent to the server)."""

    client_id: int
    diagnostics: LocalDiagnostics
    accountant: dict
    epsilon: float
    seconds: float = 0.0    # the client's compute time in this round (for overhead figures)


def resolve(items: Sequence[Any]) -> list[Any]:
    """The values behind ``items`` (each a :class:`Handle` or a plain value), in order;
    every referenced list is fetched once."""
    import ray

    refs = list(dict.fromkeys(item.ref for item in items if isinstance(item, Handle)))
    values = dict(zip(refs, ray.get(refs))) if refs else {}
    return [values[item.ref][item.index] if isinstance(item, Handle) else item for item in items]


def owned(value: Any) -> Any:
    """A private copy of an object fetched from the object store (its arrays may be
    read-only views of shared memory that vanish with Ray)."""
    import pickle

    return pickle.loads(pickle.dumps(value))
