"""FedHypeVAE (Gupta, Jangid, Sethi): hypernetwork-generated conditional VAEs trained
federatedly under DP-SGD, aligned with MMD, condensed into a meta-code."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from fedsim.algorithms.fedhypevae.client import FedHypeVAEClient
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.fedhypevae.server import FedHypeVAEServer
from fedsim.algorithms.fedhypevae.synthesis import GeneratorArtifact, synthesize
from fedsim.algorithms.spec import FederationSpec

if TYPE_CHECKING:
    from fedsim.algorithms.registry import RunSettings
    from fedsim.data.federation import ClientData


def make_server(spec: FederationSpec, settings: RunSettings) -> FedHypeVAEServer:
    return FedHypeVAEServer(spec, settings.method, settings.seed)


def make_client(data: ClientData, spec: FederationSpec, settings: RunSettings) -> FedHypeVAEClient:
    return FedHypeVAEClient(data, spec, settings.method, settings.privacy, settings.training,
                            settings.evaluation, settings.seed)


def warm_start_wanted(settings: RunSettings) -> bool:
    """The round driver's question before round 0: does the server warm-start on the
    clients' releases (``--fedhypevae.training stats-first``)?"""
    return bool(settings.method.stats_first)


def synthetic_set(artifact: GeneratorArtifact, size: int,
                  generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    return synthesize(artifact, size, generator)


__all__ = ["FedHypeVAEClient", "FedHypeVAEConfig", "FedHypeVAEServer", "GeneratorArtifact",
           "make_client", "make_server", "synthetic_set", "warm_start_wanted"]
