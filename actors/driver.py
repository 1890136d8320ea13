"""The Ray side of ``--backend ray``: start or join Ray, build the server proxy and the
client pool; the rounds themselves are :func:`fedsim.simulation.run_federation`.

Ray session (:func:`ray_session`): with ``--ray.address`` or the environment variable
``RAY_ADDRESS`` the run joins that cluster (every node must have fedsim installed, and
with checkpoints the run directory must be on storage every node sees); otherwise it
starts a local Ray without the dashboard, with ``--ray.num-cpus`` CPUs (default: every
core), and shuts it down at the end.  A Ray that is already initialised in this process
(a test, a Tune trial) is used as it is and left running.

Start-up (:func:`ray_started`): the CLI starts Ray, the server actor and the client
actors before it loads the run's data, so that the actors' processes start and import
the algorithm's module while the driver builds the federation; :func:`ray_federation`
then hands them the clients' data (object refs) and the spec.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence, cast

import ray
from ray.actor import ActorHandle

from actors.client_actor import ClientActor
from actors.messages import owned
from actors.pool import RayClientPool, kill_actors, spawn_client_actor
from actors.server_actor import ServerActor
from fedsim.backend import ActorPlan, RayConfig, plan_actors
from fedsim.errors import UserError

if TYPE_CHECKING:
    from fedsim.algorithms.registry import RunSettings
    from fedsim.algorithms.spec import FederationSpec


class _DropDefaultTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


@contextlib.contextmanager
def _quiet_default_token_notice() -> Iterator[None]:
    """Ray ≥ 2.5x enables token authentication on every new local cluster and logs a
    WARNING saying so (and how to opt out).  For the private, single-run cluster that
    fedsim starts and shuts down itself the line is noise (and lands before a user
    error's one sentence); drop that one message, nothing else: token auth stays on."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice_filter = _DropDefaultTokenNotice()
    logger.addFilter(notice_filter)
    try:
        yield
    finally:
        logger.removeFilter(notice_filter)


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
                with _quiet_default_token_notice():
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


def cluster_plan(num_clients: int, config: RayConfig, device: str = "auto") -> ActorPlan:
    """:func:`fedsim.backend.plan_actors` for the connected cluster's resources."""
    resources = ray.cluster_resources()
    return plan_actors(num_clients, float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)), config,
                       device)


class ServerProxy:
    """The server interface of :mod:`fedsim.algorithms.base`, backed by a
    :class:`~actors.server_actor.ServerActor`.  ``broadcast`` returns an ObjectRef
    (Φ goes from the server actor to the object store once per round and from there to
    the client actors); ``aggregate`` and ``finalize`` take the pool's handles."""

    def __init__(self, spec: FederationSpec | None, settings: RunSettings, threads: int = 1) -> None:
        """With ``spec`` None the actor starts now and makes its server at :meth:`build`."""
        # Ray types ActorClass.remote as "handle or class"; it returns a handle
        self.actor = cast(ActorHandle[ServerActor],
                          ray.remote(ServerActor).options(num_cpus=0, max_restarts=0).remote(spec, settings, threads))

    def build(self, spec: FederationSpec) -> None:
        """Have an actor started without ``spec`` make its server (returns at once)."""
        self.actor.build.remote(spec)

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
        kill_actors([self.actor])


@dataclass
class RayStart:
    """Ray and the actors of a run, started before its data exists (:func:`ray_started`)."""

    config: RayConfig
    settings: RunSettings
    plan: ActorPlan
    server: ServerProxy | None
    client_actors: list[ActorHandle[ClientActor]]

    def take(self) -> tuple[ServerProxy, list[ActorHandle[ClientActor]]]:
        """The server and the client actors, handed over once (the taker removes them)."""
        if self.server is None:
            raise ValueError("the actors started for this run were already taken")
        taken = self.server, self.client_actors
        self.server, self.client_actors = None, []
        return taken

    def close(self) -> None:
        """Remove the actors that no run took over."""
        if self.server is not None:
            self.server.close()
            self.server = None
        kill_actors(self.client_actors)
        self.client_actors = []


@contextlib.contextmanager
def ray_started(config: RayConfig, settings: RunSettings, num_clients: int) -> Iterator[RayStart]:
    """Start Ray (:func:`ray_session`), the server actor and the client actors of a run of
    ``num_clients`` clients now, before its data is loaded: the actors' processes start
    and import the algorithm's module while the driver builds the federation; they get
    their data and spec later (:func:`ray_federation` with ``started``).  Actors not
    taken over are removed on exit, and Ray shut down if this started it."""
    config.validate()
    with ray_session(config):
        plan = cluster_plan(num_clients, config, settings.device_option)
        start = RayStart(config, settings, plan, ServerProxy(None, settings, plan.threads), [])
        try:
            remote = ray.remote(ClientActor)
            start.client_actors = [spawn_client_actor(remote, plan, settings) for _ in range(plan.num_actors)]
            yield start
        finally:
            start.close()


@contextlib.contextmanager
def ray_federation(prepared, config: RayConfig, verbose: bool = True, started: RayStart | None = None,
                   **pool_options) -> Iterator[tuple[ServerProxy, RayClientPool]]:
    """``(server, pool)`` of a prepared run (:func:`fedsim.commands.training_run.prepare`)
    on Ray, inside :func:`ray_session`; actors are removed on exit.  The server actor and
    the client actors start concurrently.  With ``started`` (:func:`ray_started`, for the
    same settings and Ray options), the run takes over its actors when its layout is the
    one planned there (else it starts its own, in the same Ray)."""
    if started is not None and (started.settings != prepared.settings or started.config != config):
        raise ValueError("ray_federation: started for other settings or Ray options than this run's")
    config.validate()
    with contextlib.nullcontext() if started is not None else ray_session(config):
        plan = cluster_plan(len(prepared.federation.clients), config, prepared.settings.device_option)
        server = pool = None
        try:
            if started is not None and started.server is not None and plan == started.plan \
                    and pool_options.get("actor_class", ClientActor) is ClientActor:
                server, taken = started.take()
                server.build(prepared.spec)
                pool = RayClientPool(prepared.federation, prepared.spec, prepared.settings, plan,
                                     round_timeout_s=config.round_timeout_s, max_restarts=config.max_restarts,
                                     verbose=verbose, started=taken, **pool_options)
            else:
                if started is not None:  # another layout (or actor class): free the resources they hold
                    started.close()
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
