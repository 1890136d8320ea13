""":class:`RayClientPool`: the clients of a federation on Ray client actors.

It has the methods of :class:`fedsim.simulation.LocalClientPool`, so
:func:`fedsim.simulation.run_federation` drives both backends.  Differences, all
invisible to the driver code:

* ``local_round`` takes the broadcast as an ObjectRef (from the server actor, see
  :class:`~actors.driver.ServerProxy`) or as a dict, which it puts into the object
  store once; every actor reads the same object.  Results are collected with
  ``ray.wait``; the updates stay in the object store (the outcomes hold
  :class:`~actors.messages.Handle` s that the server actor resolves), and only the
  small :class:`~actors.messages.ClientReport` s reach the driver.
* Faults: a client actor that dies during a round is left out of it (the round
  aggregates the others), then restarted from the last checkpoint (or its clients'
  initial state), and its clients' ledgers are fixed by
  :func:`fedsim.privacy.recovery.recover_client` from what they reported.  Which
  checkpoint that is, the pool learns through :meth:`RayClientPool.checkpoint_written`
  (called by :class:`~fedsim.callbacks.CheckpointCallback` after writing one and by
  :func:`~fedsim.simulation.resume_run` after loading one).  Outside rounds
  (release, evaluation, ledger), a lost actor is restarted and the call retried once.
* ``--ray.round-timeout-s``: clients still running at the deadline are left out of
  the round; their next round queues behind the late one.
* ``release`` returns handles too (the server actor fetches the releases).

The driver holds no client state: only each client's accountant history (a few
numbers) and its latest ε.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Any, Sequence, cast

import ray
from ray.actor import ActorClass, ActorHandle
from ray.exceptions import RayActorError

from actors.client_actor import ClientActor
from actors.messages import Handle, owned
from fedsim.backend import ActorPlan


def kill_actors(actors: Sequence[ActorHandle]) -> None:
    """Kill ``actors`` without restarting them; one already gone is not an error."""
    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001
            pass


def spawn_client_actor(remote: ActorClass[ClientActor], plan: ActorPlan, settings, data=None,
                       spec=None) -> ActorHandle[ClientActor]:
    """A client actor with ``plan``'s resources hosting ``data`` (an object ref to a list
    of :class:`~fedsim.data.federation.ClientData`), or, with ``data`` None, one that
    starts now and builds its clients when :meth:`ClientActor.build` is called."""
    options: dict[str, Any] = {"num_cpus": plan.cpus_per_actor, "max_restarts": 0, "max_task_retries": 0}
    if plan.gpus_per_actor > 0:
        options["num_gpus"] = plan.gpus_per_actor
    # Ray types ActorClass.remote as "handle or class"; it returns a handle
    return cast(ActorHandle[ClientActor], remote.options(**options).remote(data, spec, settings, plan.threads))


class RayClientPool:
    """The clients of ``federation`` on ``plan.num_actors`` client actors."""

    def __init__(self, federation, spec, settings, plan: ActorPlan, *, round_timeout_s: float = 0.0,
                 max_restarts: int = 3, verbose: bool = True, actor_class: type = ClientActor,
                 started: Sequence[ActorHandle[ClientActor]] | None = None) -> None:
        """``started``: actors of ``actor_class`` already started without data
        (:func:`spawn_client_actor` with ``data`` None), one per group of ``plan``; they
        build their clients now."""
        self.spec, self.settings, self.plan = spec, settings, plan
        self.round_timeout_s, self.max_restarts, self.verbose = round_timeout_s, max_restarts, verbose
        by_id = {c.client_id: c for c in federation.clients}
        self.client_ids = sorted(by_id)
        self.groups = plan.groups(self.client_ids)
        self.owner = {cid: k for k, group in enumerate(self.groups) for cid in group}
        self._remote: ActorClass[ClientActor] = ray.remote(actor_class)
        self._data = [ray.put([by_id[cid] for cid in group]) for group in self.groups]
        if started is not None:
            if len(started) != len(self.groups):
                raise ValueError(f"{len(started)} started actors for {len(self.groups)} client groups")
            self.actors = list(started)
            ray.get([actor.build.remote(data, spec) for actor, data in zip(self.actors, self._data)])
        else:
            self.actors = [self._spawn(k) for k in range(len(self.groups))]
            ray.get([actor.ready.remote() for actor in self.actors])
        self._confirmed: dict[int, dict] = {}        # accountant state after the last confirmed round
        self._unconfirmed: dict[int, int] = defaultdict(int)  # rounds started, not confirmed
        self._epsilon: dict[int, float] = {}
        self._checkpoint: tuple[str, list[dict]] | None = None
        self._round = 0
        self.restarts = 0
        self.events: list[dict] = []                 # faults and late clients, for logs and tests
        self.round_stats: dict = {"actor_seconds": {}, "client_seconds": {}}  # compute times, last round

    # --- actors --------------------------------------------------------------------------
    def _spawn(self, k: int) -> ActorHandle[ClientActor]:
        return spawn_client_actor(self._remote, self.plan, self.settings, self._data[k], self.spec)

    def _by_actor(self, ids: Sequence[int]) -> dict[int, list[int]]:
        calls: dict[int, list[int]] = {}
        for cid in ids:
            calls.setdefault(self.owner[cid], []).append(cid)
        return calls

    def _restart(self, k: int, round_index: int, reason: str) -> None:
        """Replace actor ``k``: new process, last checkpoint, ledgers fixed, fresh noise."""
        self.restarts += 1
        group = self.groups[k]
        self.events.append({"event": "restart", "actor": k, "round": round_index + 1, "clients": list(group),
                            "reason": reason})
        if self.restarts > self.max_restarts:
            raise RuntimeError(f"client actor {k} failed ({reason}) after {self.max_restarts} restarts "
                               f"(--ray.max-restarts); resume the run from its last checkpoint with --resume")
        if self.verbose:
            source = f"checkpoint {self._checkpoint[0]}" if self._checkpoint else "the initial state"
            print(f"fedsim: client actor {k} (clients {group[0]}–{group[-1]}) lost in round {round_index + 1} "
                  f"({reason}); restarting it from {source}", file=sys.stderr)
        kill_actors([self.actors[k]])  # already gone, usually
        actor = self._spawn(k)
        ray.get(actor.ready.remote())
        if self._checkpoint is not None:
            ray.get(actor.load_states.remote(*self._checkpoint))
        recovered = ray.get(actor.recover.remote({cid: self._confirmed.get(cid) for cid in group},
                                                 {cid: self._unconfirmed[cid] for cid in group},
                                                 round_index, self.restarts))
        for cid, (accountant, epsilon) in recovered.items():
            self._confirmed[cid], self._epsilon[cid] = accountant, epsilon
            self._unconfirmed[cid] = 0
        self.actors[k] = actor

    def _call(self, method: str, ids: Sequence[int], *args) -> dict[int, tuple[Any, int, Any]]:
        """``method(group, *args)`` on every actor holding some of ``ids``; a lost actor is
        restarted and its call retried once.  Returns ``{cid: (ref, position, value)}``."""
        calls = self._by_actor(ids)
        refs = {k: getattr(self.actors[k], method).remote(group, *args) for k, group in calls.items()}
        out: dict[int, tuple[Any, int, Any]] = {}
        for k, group in calls.items():
            try:
                values = ray.get(refs[k])
            except RayActorError as error:
                self._restart(k, self._round, f"{type(error).__name__} during {method}")
                refs[k] = getattr(self.actors[k], method).remote(group, *args)
                values = ray.get(refs[k])
            for position, (cid, value) in enumerate(zip(group, values)):
                out[cid] = (refs[k], position, value)
        return out

    # --- the ClientPool protocol ---------------------------------------------------------
    def local_round(self, ids: Sequence[int], broadcast, round_index: int) -> list[tuple[Handle, Any]]:
        self._round = round_index
        self.round_stats = {"actor_seconds": {}, "client_seconds": {}}
        reference = broadcast if isinstance(broadcast, ray.ObjectRef) else ray.put(broadcast)
        pending: dict[Any, tuple[int, list[int], Any]] = {}
        for k, group in self._by_actor(ids).items():
            updates, reports = self.actors[k].local_round.options(num_returns=2).remote(group, reference, round_index)
            pending[reports] = (k, group, updates)
            for cid in group:
                self._unconfirmed[cid] += 1
        outcomes: dict[int, tuple[Handle, Any]] = {}
        lost: list[tuple[int, str]] = []
        deadline = time.monotonic() + self.round_timeout_s if self.round_timeout_s > 0 else None
        waiting = list(pending)
        while waiting:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, waiting = ray.wait(waiting, num_returns=1, timeout=timeout)
            if not done:
                break
            k, group, updates = pending[done[0]]
            try:
                reports = ray.get(done[0])
            except RayActorError as error:
                lost.append((k, type(error).__name__))
                continue
            self.round_stats["actor_seconds"][k] = sum(report.seconds for report in reports)
            for position, report in enumerate(reports):
                cid = report.client_id
                self.round_stats["client_seconds"][cid] = report.seconds
                self._confirmed[cid], self._epsilon[cid] = report.accountant, report.epsilon
                self._unconfirmed[cid] = 0
                outcomes[cid] = (Handle(updates, position, cid), report.diagnostics)
        for ref in waiting:
            k, group, _ = pending[ref]
            self.events.append({"event": "late", "actor": k, "round": round_index + 1, "clients": list(group)})
            if self.verbose:
                print(f"fedsim: round {round_index + 1}: clients {group} missed the "
                      f"{self.round_timeout_s:g} s deadline; aggregating without them", file=sys.stderr)
        for k, reason in lost:
            self._restart(k, round_index, reason)
        return [outcomes[cid] for cid in ids if cid in outcomes]

    def release(self, ids: Sequence[int]) -> list[Handle]:
        """Handles to the releases (the server actor fetches them).  The accountant states
        after the release come from the same actor task (its second return), so a release
        that reached the object store is always confirmed: a client restarted after this
        point (from its initial state or a checkpoint before the release) gets an
        accountant that charges it.  An actor lost before its task completed released
        nothing; it is restarted and asked once more."""
        for cid in ids:
            self._epsilon.pop(cid, None)  # a release is a mechanism: ε changes
        calls = self._by_actor(ids)
        launched = {k: self.actors[k].release.options(num_returns=2).remote(group) for k, group in calls.items()}
        handles: dict[int, Handle] = {}
        for k, group in calls.items():
            releases, accountants = launched[k]
            try:
                states = ray.get(accountants)
            except RayActorError as error:
                self._restart(k, self._round, f"{type(error).__name__} during release")
                releases, accountants = self.actors[k].release.options(num_returns=2).remote(group)
                states = ray.get(accountants)
            for position, (cid, state) in enumerate(zip(group, states)):
                self._confirmed[cid] = state
                handles[cid] = Handle(releases, position, cid)
        return [handles[cid] for cid in ids]

    def evaluate(self, ids: Sequence[int], artifact: Any, global_test: Any = None) -> list[Any]:
        reference = artifact if isinstance(artifact, ray.ObjectRef) else ray.put(artifact)
        results = self._call("evaluate", ids, reference, global_test)
        return owned([results[cid][2] for cid in ids])

    def epsilons(self, ids: Sequence[int]) -> list[float]:
        missing = [cid for cid in ids if cid not in self._epsilon]
        if missing:
            for cid, (_, _, value) in self._call("epsilons", missing).items():
                self._epsilon[cid] = value
        return [self._epsilon[cid] for cid in ids]

    def privacy_records(self, ids: Sequence[int]) -> list[Any]:
        results = self._call("privacy_records", ids)
        return owned([results[cid][2] for cid in ids])

    # --- checkpoints -----------------------------------------------------------------------
    def save_states(self, directory) -> list[dict]:
        """Every actor writes its clients' states into ``directory`` (shared storage)."""
        directory = str(directory)
        shards: list[dict] = []
        refs = [actor.save_states.remote(directory) for actor in self.actors]
        for k, ref in enumerate(refs):
            try:
                shards.extend(ray.get(ref))
            except RayActorError as error:
                self._restart(k, self._round, f"{type(error).__name__} while checkpointing")
                shards.extend(ray.get(self.actors[k].save_states.remote(directory)))
        return shards

    def load_states(self, directory, shards: list[dict]) -> None:
        ray.get([actor.load_states.remote(str(directory), shards) for actor in self.actors])
        self._epsilon.clear()
        self._confirmed.clear()
        self._unconfirmed.clear()
        for cid, (_, _, state) in self._call("accountants", self.client_ids).items():
            self._confirmed[cid] = state

    def recover(self, unconfirmed: dict[int, int], seed: int, round_index: int, restart: int | str) -> None:
        """``--resume`` after a crash: every actor charges its clients the rounds they
        started after the checkpoint and re-seeds their noise (the ``ClientPool`` hook)."""
        groups = [k for k, group in enumerate(self.groups) if any(cid in unconfirmed for cid in group)]
        refs = [self.actors[k].recover.remote({}, {cid: unconfirmed.get(cid, 0) for cid in self.groups[k]},
                                              round_index, restart) for k in groups]
        for recovered in ray.get(refs):
            for cid, (accountant, epsilon) in recovered.items():
                self._confirmed[cid], self._epsilon[cid] = accountant, epsilon

    def checkpoint_written(self, directory, shards: list[dict]) -> None:
        """Remember the checkpoint a restarted actor starts from (the ``ClientPool`` hook)."""
        self._checkpoint = (str(directory), list(shards))

    def close(self) -> None:
        kill_actors(self.actors)
        self.actors = []
