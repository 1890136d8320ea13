"""FedLambda: per client the λ-blend ``λ·softmax(local) + (1 − λ)·softmax(global)`` of a
linear classifier trained on the client's real train split and the FedAvg global
model, λ chosen on validation data (:mod:`fedsim.evaluation.blend`).  The global model
is trained exactly as :mod:`fedsim.algorithms.fedavg`; only the evaluation differs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedsim.algorithms import fedavg
from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.spec import FederationSpec


if TYPE_CHECKING:
    from fedsim.algorithms.registry import RunSettings
    from fedsim.data.federation import ClientData


@dataclass(frozen=True)
class FedLambdaConfig(FedAvgConfig):
    """FedLambda options: those of the FedAvg model it blends with (λ grid and rule: --evaluation.*)."""

    def validate(self, prefix: str = "--fedlambda.") -> None:
        """FedAvg's checks, under --fedlambda.*."""
        super().validate(prefix)


def make_server(spec: FederationSpec, settings: RunSettings) -> fedavg.FederatedClassifierServer:
    return fedavg.FederatedClassifierServer(spec, settings.seed)


def make_client(data: ClientData, spec: FederationSpec, settings: RunSettings) -> fedavg.FederatedClassifierClient:
    return fedavg.make_client(data, spec, settings, blend=True)


synthetic_set = fedavg.synthetic_set

__all__ = ["FedLambdaConfig", "make_client", "make_server", "synthetic_set"]
