"""A Ray worker that owns the server object of a federation.

Updates and releases arrive as :class:`~actors.messages.Handle` s into the client
actors' results; the server actor fetches them from the object store itself.  Plain
Python apart from :func:`~actors.messages.resolve`; wrapped by
:class:`~actors.driver.ServerProxy`.
"""

from __future__ import annotations

from typing import Any, Sequence

from actors.client_actor import set_threads
from actors.messages import resolve


class ServerActor:
    """Holds ``make_server(spec, settings)`` of the run's algorithm; with ``spec`` None it
    only imports the algorithm's module and waits for :meth:`build` (as
    :class:`~actors.client_actor.ClientActor` does)."""

    def __init__(self, spec, settings, threads: int = 1) -> None:
        from fedsim.algorithms.registry import algorithm_module

        set_threads(threads)
        self.module = algorithm_module(settings.algorithm)
        self.settings = settings
        self.server: Any = None
        if spec is not None:
            self.build(spec)

    def build(self, spec) -> bool:
        """Make the server of a federation of ``spec``."""
        self.server = self.module.make_server(spec, self.settings)
        return True

    def ready(self) -> bool:
        return True

    def broadcast(self) -> dict:
        return self.server.broadcast()

    def aggregate(self, updates: Sequence[Any]) -> None:
        self.server.aggregate(resolve(updates))

    def warm_start(self, releases: Sequence[Any]) -> None:
        self.server.warm_start(resolve(releases))

    def finalize(self, releases: Sequence[Any]) -> Any:
        return self.server.finalize(resolve(releases))

    def state_dict(self) -> dict:
        return self.server.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.server.load_state_dict(state)
