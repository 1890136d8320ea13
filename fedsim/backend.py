"""Runtime options of the ``ray`` backend, and how clients are laid out on actors.

fedsim itself never imports Ray: this module only holds the (tyro-exposed) options and
the pure arithmetic of the layout; the runtime is the top-level ``actors`` package.

Layout (:func:`plan_actors`): a cluster with ``C`` CPUs hosts at most
``⌊C / cpus_per_actor⌋`` client actors (fewer with ``--ray.max-actors``).  With
``--ray.clients-per-actor 0`` (auto) every client gets its own actor while the
cluster has room; with more clients than that, the clients are spread evenly over
as many actors as fit (``⌈m / actors⌉`` clients each).  The server actor reserves
no CPU: it works only between the clients' rounds.  On a cluster with GPUs each
client actor gets ``GPUs / actors`` of one by default (fractional) unless the clients
run on the CPU (``--device cpu``, the default, or a method that runs on the CPU only);
on a CPU-only cluster none is requested, and ``--device cuda`` is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedsim.errors import UserError
from fedsim.validation import check


@dataclass(frozen=True)
class RayConfig:
    """Options of the Ray runtime (``--backend ray``)."""

    address: str | None = None
    """Ray cluster to join (e.g. ``auto`` or ``ray://head:10001``); default: the RAY_ADDRESS environment variable, else a local Ray started for this run (no dashboard)."""
    num_cpus: int = 0
    """CPUs of the local Ray instance this run starts (0 = every core); ignored when joining a cluster."""
    cpus_per_actor: float = 1.0
    """CPUs reserved by each client actor (fractions allowed); the actor runs torch with this many threads, rounded down, at least 1."""
    gpus_per_actor: float | None = None
    """GPUs reserved by each client actor (fractions allowed); default: the cluster's GPUs divided among the client actors when it has any, else none."""
    clients_per_actor: int = 0
    """Clients hosted by one actor (0 = auto: one per actor while the cluster has room, else spread evenly over the actors that fit)."""
    max_actors: int = 0
    """Upper bound on the number of client actors (0 = as many as the CPUs allow)."""
    round_timeout_s: float = 0.0
    """Seconds a round waits for its clients; clients still running then are left out of that round's aggregate (0 = wait for every client)."""
    max_restarts: int = 3
    """Restarts of failed client actors allowed per run (each from the last checkpoint); one more failure stops the run."""

    def validate(self, prefix: str = "--ray.") -> None:
        """Raise a UserError naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("address", self.address is None or self.address.strip() != "", "a non-empty cluster address"),
            ("num_cpus", self.num_cpus >= 0, "an integer >= 0"),
            ("cpus_per_actor", math.isfinite(self.cpus_per_actor) and self.cpus_per_actor > 0, "a number > 0"),
            ("gpus_per_actor", self.gpus_per_actor is None
             or (math.isfinite(self.gpus_per_actor) and self.gpus_per_actor >= 0), "a number >= 0"),
            ("clients_per_actor", self.clients_per_actor >= 0, "an integer >= 0"),
            ("max_actors", self.max_actors >= 0, "an integer >= 0"),
            ("round_timeout_s", math.isfinite(self.round_timeout_s) and self.round_timeout_s >= 0, "a number >= 0"),
            ("max_restarts", self.max_restarts >= 0, "an integer >= 0"),
        ])


@dataclass(frozen=True)
class ActorPlan:
    """How a federation's clients are laid out on client actors."""

    num_actors: int
    clients_per_actor: int
    cpus_per_actor: float
    gpus_per_actor: float
    threads: int

    def groups(self, client_ids: list[int]) -> list[list[int]]:
        """Contiguous blocks of ``clients_per_actor`` ids, one per actor."""
        ids = sorted(client_ids)
        size = self.clients_per_actor
        return [ids[start:start + size] for start in range(0, len(ids), size)]


def plan_actors(num_clients: int, cluster_cpus: float, cluster_gpus: float, config: RayConfig,
                device: str = "auto") -> ActorPlan:
    """The layout of ``num_clients`` clients on a cluster (module docstring); ``device``:
    ``--device`` as it applies to the method (``RunSettings.device_option``)."""
    if device == "cuda" and cluster_gpus <= 0:
        raise UserError("--device cuda: the Ray cluster has no GPUs; use --device cpu or auto.")
    if num_clients < 1:
        raise ValueError("a federation needs at least one client")
    capacity = int(math.floor(cluster_cpus / config.cpus_per_actor + 1e-9))
    if config.max_actors:
        capacity = min(capacity, config.max_actors)
    if capacity < 1:
        raise UserError(f"--ray.cpus-per-actor is {config.cpus_per_actor}, but the Ray cluster has only "
                        f"{cluster_cpus:g} CPUs; lower it to at most {cluster_cpus:g}.")
    if config.clients_per_actor:
        per_actor = config.clients_per_actor
        needed = math.ceil(num_clients / per_actor)
        if needed > capacity:
            raise UserError(f"--ray.clients-per-actor {per_actor} needs {needed} actors for {num_clients} clients, "
                            f"but the cluster fits {capacity} (--ray.cpus-per-actor {config.cpus_per_actor}); "
                            f"raise it to at least {math.ceil(num_clients / capacity)} or use 0 (auto).")
    else:
        per_actor = math.ceil(num_clients / min(num_clients, capacity))
    actors = math.ceil(num_clients / per_actor)
    if config.gpus_per_actor is None:
        gpus = cluster_gpus / actors if cluster_gpus > 0 and device != "cpu" else 0.0
        if gpus >= 1:
            gpus = float(math.floor(gpus))  # Ray wants whole GPUs above one
    else:
        gpus = config.gpus_per_actor
        if gpus * actors > cluster_gpus + 1e-9:
            raise UserError(f"--ray.gpus-per-actor {gpus} × {actors} client actors exceeds the cluster's "
                            f"{cluster_gpus:g} GPUs; lower it to at most {cluster_gpus / actors:g}.")
    threads = max(1, int(math.floor(config.cpus_per_actor + 1e-9)))
    return ActorPlan(actors, per_actor, config.cpus_per_actor, gpus, threads)
