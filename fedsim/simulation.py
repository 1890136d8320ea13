"""The round driver, independent of how messages travel, and the in-process backend.

:func:`run_federation` runs the protocol of :mod:`fedsim.algorithms.base` against a
*client pool*: :class:`LocalClientPool` calls client objects in this process (the
``local`` backend); the Ray runtime in ``actors/`` provides a pool with the same
methods backed by actors.  Same seed and settings ⇒ the same results on both.

What happens around the rounds (checkpoints, a progress bar, reports to Ray Tune) is
given to the driver as :class:`~fedsim.callbacks.RunCallback` s.  A resumed run first
loads its latest checkpoint into the server and the pool with :func:`resume_run`, then
calls :func:`run_federation` with the round and the result it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import numpy as np
from torch import Tensor

from fedsim.algorithms.base import Client, ClientUpdate, LocalDiagnostics, Server
from fedsim.algorithms.registry import RunSettings, algorithm_module
from fedsim.algorithms.spec import FederationSpec
from fedsim.checkpoint import load_checkpoint, load_client_states, save_client_states, set_rng_states
from fedsim.evaluation.blend import ClientEvaluation, kept_test_sets
from fedsim.evaluation.global_test import GlobalTestSet
from fedsim.privacy.journal import read_journal, unconfirmed_rounds
from fedsim.privacy.recovery import recover_client
from fedsim.seeding import numpy_rng

if TYPE_CHECKING:
    from fedsim.callbacks import RunCallback
    from fedsim.data.federation import Federation
    from fedsim.privacy.ledger import ClientPrivacyRecord


class ClientPool(Protocol):
    """The clients of a federation, wherever they live.

    ``broadcast`` is the server's (for a proxy server, what its ``broadcast`` returns: the
    Ray runtime's is a reference to Φ in the object store); an outcome's update is a
    :class:`ClientUpdate`, or what the pool's server aggregates in its place (the Ray
    runtime's: a handle to the update in the object store)."""

    client_ids: list[int]

    def local_round(self, ids: Sequence[int], broadcast: Any,
                    round_index: int) -> Sequence[tuple[ClientUpdate | Any, LocalDiagnostics]]: ...
    def release(self, ids: Sequence[int]) -> list[Any]: ...
    def evaluate(self, ids: Sequence[int], artifact: Any, global_test: GlobalTestSet | None = None) -> list[ClientEvaluation]: ...
    def epsilons(self, ids: Sequence[int]) -> list[float]: ...
    def privacy_records(self, ids: Sequence[int]) -> list[ClientPrivacyRecord]: ...
    def save_states(self, directory: Path) -> list[dict[str, Any]]: ...
    def load_states(self, directory: Path, shards: list[dict[str, Any]]) -> None: ...
    def checkpoint_written(self, directory: Path, shards: list[dict[str, Any]]) -> None:
        """The checkpoint in ``directory`` (written or loaded) is the run's latest: the one
        a client worker lost from now on restarts from."""

    def recover(self, unconfirmed: dict[int, int], seed: int, round_index: int, restart: int | str) -> None:
        """Charge each client ``unconfirmed[id]`` full rounds and re-seed its noise
        (:func:`fedsim.privacy.recovery.recover_client`; ``--resume`` after a crash)."""


class LocalClientPool:
    """Every client object in this process, called one after the other."""

    def __init__(self, federation: Federation, spec: FederationSpec, settings: RunSettings) -> None:
        module = algorithm_module(settings.algorithm)
        self.clients: dict[int, Client] = {c.client_id: module.make_client(c, spec, settings)
                                           for c in federation.clients}
        self.client_ids = sorted(self.clients)

    def local_round(self, ids: Sequence[int], broadcast: Mapping[str, Tensor],
                    round_index: int) -> list[tuple[ClientUpdate, LocalDiagnostics]]:
        return [self.clients[i].local_round(broadcast, round_index) for i in ids]

    def release(self, ids: Sequence[int]) -> list[Any]:
        return [self.clients[i].release() for i in ids]

    def evaluate(self, ids: Sequence[int], artifact: Any,
                 global_test: GlobalTestSet | None = None) -> list[ClientEvaluation]:
        return [self.clients[i].evaluate(artifact, global_test) for i in ids]

    def epsilons(self, ids: Sequence[int]) -> list[float]:
        return [self.clients[i].privacy_state.epsilon() for i in ids]

    def privacy_records(self, ids: Sequence[int]) -> list[ClientPrivacyRecord]:
        return [self.clients[i].privacy_record() for i in ids]

    def save_states(self, directory: Path) -> list[dict[str, Any]]:
        """Write every client's state into checkpoint ``directory``; return the shard list."""
        return save_client_states(self.clients, self.client_ids, directory)

    def load_states(self, directory: Path, shards: list[dict[str, Any]]) -> None:
        """Load every client's state from checkpoint ``directory``."""
        load_client_states(self.clients, directory, shards)

    def checkpoint_written(self, directory: Path, shards: list[dict[str, Any]]) -> None:
        """Nothing to remember: clients in this process are never lost on their own."""

    def recover(self, unconfirmed, seed, round_index, restart):
        for client_id, rounds in unconfirmed.items():
            recover_client(self.clients[client_id], None, rounds, seed, round_index, restart)


def sample_clients(client_ids: Sequence[int], fraction: float, seed: int, round_index: int) -> list[int]:
    """The clients taking part in a round (seeded, at least one)."""
    if fraction >= 1.0:
        return list(client_ids)
    count = max(1, int(round(fraction * len(client_ids))))
    chosen = numpy_rng(seed, "client-sampling", round_index).choice(len(client_ids), count, replace=False)
    return [client_ids[i] for i in sorted(chosen)]


@dataclass
class RunResult:
    """What a federation run produced."""

    round_metrics: list[dict] = field(default_factory=list)
    evaluations: list[ClientEvaluation] = field(default_factory=list)
    privacy_records: list[ClientPrivacyRecord] = field(default_factory=list)
    artifact: Any = None
    seconds: float = 0.0


def resume_run(run_dir: str | Path, server: Server, pool: ClientPool, seed: int = 0) -> tuple[int, RunResult]:
    """Load ``run_dir``'s latest checkpoint (:func:`fedsim.checkpoint.load_checkpoint`)
    into ``server`` and ``pool`` and restore the driver's RNG states; return the round
    to continue from and the result so far (its rows and seconds), the ``start_round``
    and ``result`` of :func:`run_federation`.

    Rounds the privacy journal (:mod:`fedsim.privacy.journal`) shows started after the
    checkpoint may have been released before the run stopped: their clients are charged
    a full round each and their noise re-seeded (``seed``: the run seed), so the replayed
    rounds never reuse released noise.  The journal's resume count makes every resume's
    streams distinct."""
    checkpoint = load_checkpoint(run_dir)
    server.load_state_dict(checkpoint.server)
    pool.load_states(checkpoint.directory, checkpoint.shards)
    pool.checkpoint_written(checkpoint.directory, checkpoint.shards)
    set_rng_states(checkpoint.rng)
    journal = read_journal(run_dir)
    unconfirmed = unconfirmed_rounds(journal, checkpoint.rounds_done)
    if unconfirmed:
        pool.recover(unconfirmed, seed, checkpoint.rounds_done, f"resume-{journal['resumes'] + 1}")
    return checkpoint.rounds_done, RunResult(round_metrics=list(checkpoint.round_metrics), seconds=checkpoint.seconds)


def run_federation(server: Server, pool: ClientPool, settings: RunSettings, callbacks: Sequence[RunCallback] = (),
                   start_round: int = 0, result: RunResult | None = None,
                   global_test: GlobalTestSet | None = None) -> RunResult:
    """Before round 0, when the algorithm module's ``warm_start_wanted(settings)`` says so,
    the clients' releases and ``server.warm_start(releases)``; then rounds ``start_round`` …
    ``rounds − 1``, the release, the server's
    finalisation and the evaluation, calling ``callbacks`` (:mod:`fedsim.callbacks`)
    on the way; ``result`` holds the earlier rounds of a resumed run (:func:`resume_run`).

    ``server`` may be a proxy (the Ray backend's): the broadcast is handed to the pool
    as it comes, and the pool's updates to ``server.aggregate`` as they come.  A pool
    may return fewer outcomes than clients asked (a lost or late worker): the round
    aggregates the others and its row counts the ``dropped`` ones.  A round's row:
    ``round`` (1-based), ``clients``, ``seconds``, ``dropped`` (when some were), the
    mean of every diagnostic metric the clients reported, and ``epsilon_max``, the
    running maximum over the clients that took part so far (ε never decreases).

    ``global_test`` (:mod:`fedsim.evaluation.global_test`, built by the caller from the
    federation) is simulator-side: it is handed to the clients' final evaluation only,
    after the finalisation, and nothing before reads it.  ``--evaluation.test global``
    keeps only its scores, ``client`` only the client splits' (it then needs none)."""
    callbacks = list(callbacks)
    result = result or RunResult()
    started = time.perf_counter()
    schedule = settings.training
    epsilon_max = None
    for callback in callbacks:
        callback.on_start(start_round, result)
    warm_start_wanted = getattr(algorithm_module(settings.algorithm), "warm_start_wanted", None)
    warm_releases = None
    if start_round == 0 and warm_start_wanted is not None and warm_start_wanted(settings):
        # statistics first: every client's one release, then the server's warm start
        # (post-processing).  The finalisation reuses these very releases: a client
        # restarted from its initial state after a lost worker is never asked again, so
        # no second release with fresh noise reaches the server (its accountant keeps the
        # release: the pool confirms accountant states after a release)
        warm_releases = pool.release(pool.client_ids)
        for callback in callbacks:  # the checkpoint keeps them: a resume never re-releases
            callback.on_release(0, result)
        getattr(server, "warm_start")(warm_releases)  # optional server method
    for round_index in range(start_round, schedule.rounds):
        round_started = time.perf_counter()
        ids = sample_clients(pool.client_ids, schedule.client_fraction, settings.seed, round_index)
        for callback in callbacks:
            callback.on_round_start(round_index, ids)
        outcomes = pool.local_round(ids, server.broadcast(), round_index)
        if outcomes:
            server.aggregate([update for update, _ in outcomes])
        row = {"round": round_index + 1, "clients": len(outcomes),
               "seconds": time.perf_counter() - round_started}
        if len(outcomes) < len(ids):
            row["dropped"] = len(ids) - len(outcomes)
        names = sorted({k for _, diag in outcomes for k in diag.metrics})
        for name in names:
            row[name] = float(np.mean([d.metrics[name] for _, d in outcomes if name in d.metrics]))
        epsilons = pool.epsilons(pool.client_ids if epsilon_max is None else ids)
        epsilon_max = float(max([*epsilons, 0.0 if epsilon_max is None else epsilon_max]))
        row["epsilon_max"] = epsilon_max
        result.round_metrics.append(row)
        for callback in callbacks:
            callback.on_round_end(round_index, row, result)
    releases = warm_releases
    if releases is None:
        releases = pool.release(pool.client_ids)
        for callback in callbacks:  # checkpointed before the server reads them (CheckpointCallback)
            callback.on_release(schedule.rounds, result)
    result.artifact = server.finalize(releases)
    evaluations = pool.evaluate(pool.client_ids, result.artifact, global_test)
    result.evaluations = [kept_test_sets(e, settings.evaluation.test) for e in evaluations]
    result.privacy_records = pool.privacy_records(pool.client_ids)
    result.seconds += time.perf_counter() - started
    for callback in callbacks:
        callback.on_finish(result)
    return result
