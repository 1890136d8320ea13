"""FedHypeVAE (Gupta, Jangid, Sethi): hypernetwork-generated conditional VAEs trained
federatedly under DP-SGD, aligned with MMD, condensed into a meta-code."""

from fedsim.algorithms.fedhypevae.client import FedHypeVAEClient
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.fedhypevae.server import FedHypeVAEServer
from fedsim.algorithms.fedhypevae.synthesis import GeneratorArtifact, synthesize


def make_server(spec, settings):
    return FedHypeVAEServer(spec, settings.method, settings.seed)


def make_client(data, spec, settings):
    return FedHypeVAEClient(data, spec, settings.method, settings.privacy, settings.training,
                            settings.evaluation, settings.seed)


def synthetic_set(artifact: GeneratorArtifact, size: int, generator):
    return synthesize(artifact, size, generator)


__all__ = ["FedHypeVAEClient", "FedHypeVAEConfig", "FedHypeVAEServer", "GeneratorArtifact",
           "make_client", "make_server", "synthetic_set"]
