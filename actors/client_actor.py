"""A Ray worker that hosts one or several clients of a federation.

The actor builds its clients with the algorithm's own ``make_client`` and answers the
calls of :class:`~actors.pool.RayClientPool`.  What it returns is limited to the
protocol's messages and the ledger: :class:`~fedsim.algorithms.base.ClientUpdate`,
:class:`~fedsim.algorithms.base.LocalDiagnostics` (inside a
:class:`~actors.messages.ClientReport` with the accountant's history and ε), release
objects, :class:`~fedsim.evaluation.blend.ClientEvaluation` and privacy records.
Client states (ψ_i, v_i, optimizers) leave the process only as checkpoint files the
actor writes itself (:func:`fedsim.checkpoint.save_client_states`).  After a restart,
:meth:`ClientActor.recover` fixes its clients' ledgers
(:func:`fedsim.privacy.recovery.recover_client`).

The class is plain Python (no Ray import), so it can be tested without Ray;
:class:`~actors.pool.RayClientPool` wraps it with ``ray.remote``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np
import torch

from actors.messages import ClientReport
from fedsim.algorithms.base import Client
from fedsim.algorithms.registry import algorithm_module
from fedsim.checkpoint import load_client_states, save_client_states
from fedsim.privacy.recovery import recover_client


def set_threads(threads: int) -> None:
    """torch intra- and inter-op threads of this worker: its CPU share."""
    torch.set_num_threads(max(1, int(threads)))
    try:
        torch.set_num_interop_threads(max(1, int(threads)))
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass


def _private_copy(data):
    """``data`` with writable arrays of its own: arrays fetched from Ray's object store
    are read-only views of shared memory."""
    if not dataclasses.is_dataclass(data):
        return data
    arrays = {f.name: np.array(getattr(data, f.name)) for f in dataclasses.fields(data)
              if isinstance(getattr(data, f.name), np.ndarray) and not getattr(data, f.name).flags.writeable}
    return dataclasses.replace(data, **arrays) if arrays else data


class ClientActor:
    """Holds clients ``data`` (a list of :class:`~fedsim.data.federation.ClientData`).

    With ``data`` None the actor only imports the algorithm's module and waits for
    :meth:`build`: :func:`actors.driver.ray_started` starts actors this way before the
    run's data exists, so that their start-up runs while the driver loads it."""

    def __init__(self, data: Sequence[Any] | None, spec, settings, threads: int = 1) -> None:
        set_threads(threads)
        self.module = algorithm_module(settings.algorithm)
        self.settings = settings
        self.clients: dict[int, Client] = {}
        if data is not None:
            self.build(data, spec)

    def build(self, data: Sequence[Any], spec) -> list[int]:
        """Build the clients of ``data`` with the algorithm's ``make_client``; their ids."""
        self.clients = {d.client_id: self.module.make_client(_private_copy(d), spec, self.settings) for d in data}
        return sorted(self.clients)

    def ready(self) -> list[int]:
        """The ids this actor hosts (a first call that waits for construction)."""
        return sorted(self.clients)

    def local_round(self, ids: Sequence[int], broadcast: dict, round_index: int):
        """One round of clients ``ids`` on ``broadcast``: (updates, reports), both in ``ids`` order."""
        updates, reports = [], []
        for cid in ids:
            started = time.perf_counter()
            client = self.clients[cid]
            update, diagnostics = client.local_round(broadcast, round_index)
            privacy_state = client.privacy_state
            updates.append(update)
            reports.append(ClientReport(cid, diagnostics, privacy_state.accountant.state_dict(),
                                        float(privacy_state.epsilon()), time.perf_counter() - started))
        return updates, reports

    def release(self, ids: Sequence[int]) -> tuple[list[Any], list[dict]]:
        """The releases of clients ``ids`` and their accountant states after them, from one
        task: (releases, accountants), both in ``ids`` order (Ray returns them as two
        objects, so the releases stay in the object store)."""
        releases = [self.clients[cid].release() for cid in ids]
        return releases, self._accountant_states(ids)

    def evaluate(self, ids: Sequence[int], artifact: Any, global_test: Any = None) -> list[Any]:
        return [self.clients[cid].evaluate(artifact, global_test) for cid in ids]

    def epsilons(self, ids: Sequence[int]) -> list[float]:
        return [float(self.clients[cid].privacy_state.epsilon()) for cid in ids]

    def privacy_records(self, ids: Sequence[int]) -> list[Any]:
        return [self.clients[cid].privacy_record() for cid in ids]

    def accountants(self, ids: Sequence[int]) -> list[dict]:
        return self._accountant_states(ids)

    def _accountant_states(self, ids: Sequence[int]) -> list[dict]:
        return [self.clients[cid].privacy_state.accountant.state_dict() for cid in ids]

    # --- checkpoints and recovery ----------------------------------------------------
    def save_states(self, directory: str) -> list[dict]:
        """Write this actor's client states into checkpoint ``directory``; return the shard list."""
        return save_client_states(self.clients, sorted(self.clients), directory)

    def load_states(self, directory: str, shards: list[dict]) -> list[int]:
        """Load this actor's client states from checkpoint ``directory``."""
        return load_client_states(self.clients, directory, shards)

    def recover(self, confirmed: dict[int, dict | None], unconfirmed: dict[int, int],
                round_index: int, restart: int | str) -> dict[int, tuple[dict, float]]:
        """After a restart: :func:`fedsim.privacy.recovery.recover_client` for every client;
        returns each client's new accountant state and ε."""
        out = {}
        for cid, client in self.clients.items():
            recover_client(client, confirmed.get(cid), unconfirmed.get(cid, 0), self.settings.seed,
                           round_index, restart)
            privacy_state = client.privacy_state
            out[cid] = (privacy_state.accountant.state_dict(), float(privacy_state.epsilon()))
        return out
