"""The Ray side of ``--backend ray``: start or join Ray, build the server proxy and the
client pool; the rounds themselves are :func:`fedsim.simulation.run_federation`.

Ray session (:func:`ray_session`): with ``--ray.address`` or the environment variable
``RAY_ADDRESS`` the run joins that cluster (every node must have fedsim installed, and
with checkpoints the run directory must be on storage every node sees); otherwise it
starts a local Ray without the dashboard, with ``--ray.num-cpus`` CPUs (default: every
core), and shuts it down at the end.  A Ray that is already initialised in this process
(a test, a Tune trial) is used as it is and left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, Iterator, Sequence, cast

import ray
from ray.actor import ActorHandle

from actors.messages import owned
from actors.pool import RayClientPool
from actors.server_actor import ServerActor
from fedsim.backend import ActorPlan, RayConfig, plan_actors
from fedsim.errors import UserError

if TYPE_CHECKING:
    from fedsim.algorithms.registry import RunSettings
    from fedsim.algorithms.spec import FederationSpec


@contextlib.contextmanager
def ray_session(config: RayConfig) -> Iterator[None]:
    """Ray for one run (module docstring)."""
    started = False
    if not ray.is_initialized():
        address = config.address or os.environ.get("RAY_ADDRESS")
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:
                ray.init(include_dashboard=False, num_cpus=config.num_cpus or os.cpu_count(),
                         logging_level=logging.WARNING)
        except Exception as error:  # noqa: BLE001 - any failure to start or join Ray
            what = f"join the Ray cluster at {address!r}" if address else "start a local Ray"
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise UserError(f"--backend ray could not {what} ({reason}); check --ray.address or RAY_ADDRESS, "
                            "or run with --backend local.") from error
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def cluster_plan(num_clients: int, config: RayConfig) -> ActorPlan:
    """:func:`fedsim.backend.plan_actors` for the connected cluster's resources."""
    resources = ray.cluster_resources()
    return plan_actors(num_clients, float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)), config)


class ServerProxy:
    """The server interface of :mod:`fedsim.algorithms.base`, backed by a
    :class:`~actors.server_actor.ServerActor`.  ``broadcast`` returns an ObjectRef
    (Φ goes from the server actor to the object store once per round and from there to
    the client actors); ``aggregate`` and ``finalize`` take the pool's handles."""

    def __init__(self, spec: FederationSpec, settings: RunSettings, threads: int = 1) -> None:
        # Ray types ActorClass.remote as "handle or class"; it returns a handle
        self.actor = cast(ActorHandle[ServerActor],
                          ray.remote(ServerActor).options(num_cpus=0, max_restarts=0).remote(spec, settings, threads))

    def wait_ready(self) -> None:
        ray.get(self.actor.ready.remote())

    def broadcast(self):
        return self.actor.broadcast.remote()

    def aggregate(self, updates: Sequence[Any]) -> None:
        ray.get(self.actor.aggregate.remote(list(updates)))

    def warm_start(self, releases: Sequence[Any]) -> None:
        ray.get(self.actor.warm_start.remote(list(releases)))

    def finalize(self, releases: Sequence[Any]) -> Any:
        return owned(ray.get(self.actor.finalize.remote(list(releases))))

    def state_dict(self) -> dict[str, Any]:
        return owned(ray.get(self.actor.state_dict.remote()))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ray.get(self.actor.load_state_dict.remote(state))

    def close(self) -> None:
        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # noqa: BLE001
            pass


@contextlib.contextmanager
def ray_federation(prepared, config: RayConfig, verbose: bool = True,
                   **pool_options) -> Iterator[tuple[ServerProxy, RayClientPool]]:
    """``(server, pool)`` of a prepared run (:func:`fedsim.commands.training_run.prepare`)
    on Ray, inside :func:`ray_session`; actors are removed on exit.  The server actor and
    the client actors start concurrently."""
    config.validate()
    with ray_session(config):
        plan = cluster_plan(len(prepared.federation.clients), config)
        server = pool = None
        try:
            server = ServerProxy(prepared.spec, prepared.settings, plan.threads)
            pool = RayClientPool(prepared.federation, prepared.spec, prepared.settings, plan,
                                 round_timeout_s=config.round_timeout_s, max_restarts=config.max_restarts,
                                 verbose=verbose, **pool_options)
            server.wait_ready()
            yield server, pool
        finally:
            if pool is not None:
                pool.close()
            if server is not None:
                server.close()
