"""The client/server step interface every algorithm implements, and its messages.

A round, whatever the runtime::

    broadcast = server.broadcast()                      # Φ (public)
    update, diag = client.local_round(broadcast, t)     # on each sampled client
    server.aggregate([update, ...])                     # Eq. 10
after the last round::
    release = client.release()                          # DP statistics or None
    artifact = server.finalize([release, ...])          # shared generator / model
    evaluation = client.evaluate(artifact)              # local, test split stays local

Messages are typed.  :class:`ClientUpdate` carries only a change of the shared
parameters and a public sample count (with DP a DP count or the public bound
``--privacy.max-records``, never the exact n_i:
:meth:`~fedsim.privacy.state.PrivacyState.public_sample_count`): it refuses any tensor named after a
client's private state, and servers check its keys against their own.
:class:`LocalDiagnostics` is simulator-side monitoring (training loss on private
data): it is shown to the person running the simulation and never reaches a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from fedsim.privacy.state import PrivacyState

if TYPE_CHECKING:
    from fedsim.evaluation.blend import ClientEvaluation
    from fedsim.privacy.ledger import ClientPrivacyRecord

# top-level names of client-private state: an update may never carry them
PRIVATE_TOP_LEVEL = frozenset({"encoder", "client_code", "x", "y", "data", "embeddings"})


@dataclass(frozen=True)
class ClientUpdate:
    """A client's message after a round: the privatized change of Φ and its public
    sample count (Eq. 10's weight; exact n_i only without DP)."""

    client_id: int
    delta: Mapping[str, Tensor]
    num_samples: float

    def __post_init__(self) -> None:
        for name, value in self.delta.items():
            if not isinstance(value, Tensor):
                raise TypeError(f"update entry {name!r} is not a tensor")
            if name.split(".")[0] in PRIVATE_TOP_LEVEL:
                raise ValueError(f"update entry {name!r} names client-private state")
        if self.num_samples < 0:
            raise ValueError("num_samples must be >= 0")


@dataclass(frozen=True)
class LocalDiagnostics:
    """Simulator-side monitoring of one client's round; never sent to the server."""

    client_id: int
    metrics: dict[str, float] = field(default_factory=dict)


def check_update_keys(update: ClientUpdate, shared_keys: Sequence[str]) -> None:
    """Refuse an update whose keys are not exactly the server's shared parameters."""
    if set(update.delta) != set(shared_keys):
        unexpected = sorted(set(update.delta) - set(shared_keys))[:3]
        missing = sorted(set(shared_keys) - set(update.delta))[:3]
        raise ValueError(
            f"client {update.client_id} sent an update with unexpected keys {unexpected} "
            f"and missing keys {missing}"
        )


def weighted_delta(updates: Sequence[ClientUpdate]) -> dict[str, Tensor]:
    """``Σ_i w_i Δ_i`` with ``w_i = n_i / Σ_j n_j`` (Eq. 10; n_i the updates' public counts)."""
    total = sum(u.num_samples for u in updates)
    if total == 0:
        raise ValueError("no samples in this round's updates")
    names = list(updates[0].delta)
    return {
        name: sum(u.delta[name] * (u.num_samples / total) for u in updates)  # type: ignore[misc]
        for name in names
    }


def apply_server_step(params: dict[str, Tensor], updates: Sequence[ClientUpdate],
                      server_lr: float) -> None:
    """Eq. 10 in place: ``Φ ← Φ + η_Φ Σ_i w_i Δ_i`` (Δ_i = Φ_i^local − Φ)."""
    for update in updates:
        check_update_keys(update, list(params))
    step = weighted_delta(updates)
    with torch.no_grad():
        for name, value in params.items():
            value.add_(step[name].to(value.device), alpha=server_lr)  # updates arrive on the CPU


def synthesize(artifact: Any, size: int, generator: torch.Generator) -> tuple[Any, Any]:
    """A labelled synthetic set of ``size`` records from any generator artifact with
    ``sample_labels(size, generator)`` (labels from its DP label distribution) and
    ``sample(labels, generator)``; labels sorted."""
    labels = np.sort(artifact.sample_labels(size, generator))
    return artifact.sample(labels, generator), labels


class SharedStateServer:
    """Checkpointing of a server whose whole state is ``self.shared`` (name → tensor):
    the Φ of the generative methods, the global classifier of FedAvg/FedProx."""

    shared: dict[str, Tensor]

    def state_dict(self) -> dict[str, Any]:
        return {"shared": {name: value.clone().cpu() for name, value in self.shared.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, value in state["shared"].items():
                self.shared[name].copy_(value)


class Client(Protocol):
    """What a runtime may ask of a client (state stays inside).

    ``privacy_state`` is the only part of a client's state the runtime reads or changes
    directly: ε for the round metrics, the accountant for the reports of the Ray
    runtime, and its accountant and noise stream when a lost worker's clients are
    recovered (:func:`fedsim.privacy.recovery.recover_client`)."""

    client_id: int

    @property
    def privacy_state(self) -> PrivacyState: ...

    def local_round(self, broadcast: Mapping[str, Tensor], round_index: int) -> tuple[ClientUpdate, LocalDiagnostics]: ...
    def release(self) -> Any: ...
    def evaluate(self, artifact: Any, global_test: Any = None) -> ClientEvaluation:
        """Score the final classifier on the client's splits (and on the simulator's
        global test set ``global_test``, when given: scored only, never fitted on)."""
    def privacy_record(self) -> ClientPrivacyRecord: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Server(Protocol):
    """What a runtime may ask of a server."""

    def broadcast(self) -> dict[str, Tensor]: ...
    def aggregate(self, updates: Sequence[ClientUpdate]) -> None: ...
    def finalize(self, releases: Sequence[Any]) -> Any: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
