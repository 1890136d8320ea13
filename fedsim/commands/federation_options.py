"""The options that define one federation (data, privacy, schedule, every method's
config, evaluation protocol), shared by ``train`` and the sweeps' ``RunOptions`` so each
option is declared and documented once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fedsim.algorithms.dp_cgan import DPCGANConfig
from fedsim.algorithms.dp_cvae import DPCVAEConfig
from fedsim.algorithms.dp_stats import DPStatsConfig
from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.fedlambda import FedLambdaConfig
from fedsim.algorithms.fedprox import FedProxConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.data.federation import DataConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig


@dataclass(frozen=True)
class FederationOptions:
    """Options of one federation, whatever runs it."""

    data: DataConfig = DataConfig()
    """Dataset, partition and split options."""
    privacy: PrivacyConfig = PrivacyConfig()
    """Differential-privacy options (per client, sample level)."""
    training: TrainingConfig = TrainingConfig()
    """Federated schedule."""
    fedhypevae: FedHypeVAEConfig = FedHypeVAEConfig()
    """FedHypeVAE model, objective and meta-code options."""
    fedavg: FedAvgConfig = FedAvgConfig()
    """FedAvg baseline options (global linear classifier)."""
    fedprox: FedProxConfig = FedProxConfig()
    """FedProx baseline options (FedAvg with a proximal term)."""
    fedlambda: FedLambdaConfig = FedLambdaConfig()
    """FedLambda baseline options (the FedAvg model blended with a local classifier)."""
    dp_cvae: DPCVAEConfig = DPCVAEConfig()
    """DP-CVAE baseline options (Di Salvo et al. 2025)."""
    dp_cgan: DPCGANConfig = DPCGANConfig()
    """DP-CGAN baseline options (DP discriminator, averaged generators)."""
    dp_stats: DPStatsConfig = DPStatsConfig()
    """dp-stats options (one DP release of class statistics, sampled as class-conditional Gaussians)."""
    evaluation: EvaluationConfig = EvaluationConfig()
    """Downstream evaluation protocol."""

    def federation_options(self) -> dict:
        """These options of ``self`` by field name (to carry them into another command)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(FederationOptions)}
