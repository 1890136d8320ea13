"""FedProx (Li et al. 2020, "Federated optimization in heterogeneous networks"): FedAvg
of the linear classifier with the proximal term ``(μ/2)‖w_i − w‖²`` in each client's
local objective.  The training is :mod:`fedsim.algorithms.fedavg`'s; only μ differs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedsim.algorithms import fedavg
from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.spec import FederationSpec
from fedsim.validation import check, finite


if TYPE_CHECKING:
    from fedsim.algorithms.registry import RunSettings
    from fedsim.data.federation import ClientData


@dataclass(frozen=True)
class FedProxConfig(FedAvgConfig):
    """FedProx options: FedAvg's plus the proximal weight μ."""

    mu: float = 0.05
    """Proximal weight μ of (μ/2)‖w_i − w_global‖² (the reference uses 0.05)."""

    def validate(self, prefix: str = "--fedprox.") -> None:
        """FedAvg's checks, and μ >= 0."""
        super().validate(prefix)
        check(self, prefix, [("mu", finite(self.mu) and self.mu >= 0, "a finite number >= 0")])


def make_server(spec: FederationSpec, settings: RunSettings) -> fedavg.FederatedClassifierServer:
    return fedavg.FederatedClassifierServer(spec, settings.seed)


def make_client(data: ClientData, spec: FederationSpec, settings: RunSettings) -> fedavg.FederatedClassifierClient:
    return fedavg.make_client(data, spec, settings, proximal_mu=settings.method.mu)


synthetic_set = fedavg.synthetic_set

__all__ = ["FedProxConfig", "make_client", "make_server", "synthetic_set"]
