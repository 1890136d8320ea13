"""FedHypeVAE learns (ε = ∞): reconstruction falls over rounds, and the synthetic data it
releases helps label-skewed clients beyond their local classifiers."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.algorithms.fedhypevae import FedHypeVAEConfig, make_server
from fedsim.algorithms.registry import RunSettings
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.federation import DataConfig, load_federation
from fedsim.data.synthetic import SyntheticConfig
from fedsim.evaluation.blend import select_lambdas
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig
from fedsim.simulation import LocalClientPool, run_federation


@pytest.mark.slow  # about 15–40 s on a shared 2-core machine
def test_without_dp_reconstruction_falls_and_synthetic_data_beats_local_only():
    seed = 0
    federation = load_federation(
        DataConfig(synthetic=SyntheticConfig(n_samples=3000, dim=64), num_clients=5, alpha=0.3), seed)
    spec = FederationSpec(federation.num_clients, federation.num_classes, federation.dim)
    config = FedHypeVAEConfig(hidden_dim=64, latent_dim=8, code_dim=8, hyper_hidden=32, label_dim=8, lr=0.01,
                              training="dp-sgd", observation_variance=False)
    settings = RunSettings("fedhypevae", config, PrivacyConfig(epsilon=float("inf")),
                           TrainingConfig(rounds=8, local_epochs=3, batch_size=64), EvaluationConfig(), seed)
    result = run_federation(make_server(spec, settings), LocalClientPool(federation, spec, settings), settings)

    reconstruction = [row["reconstruction"] for row in result.round_metrics]
    assert len(reconstruction) == 8
    assert np.mean(reconstruction[-3:]) < np.mean(reconstruction[:3]) - 0.01
    assert reconstruction[-1] < reconstruction[0] - 0.02

    lambdas = result.evaluations[0].lambdas
    local_only = np.array([e.test["bacc"][lambdas.index(1.0)] for e in result.evaluations])
    synthetic_only = np.array([e.test["bacc"][lambdas.index(0.0)] for e in result.evaluations])
    chosen = np.array([e.test["bacc"][i]
                       for e, i in zip(result.evaluations, select_lambdas(result.evaluations, "global"))])
    # the synthetic set alone carries class information (chance is 1/K) ...
    assert synthetic_only.mean() > 2.0 / federation.num_classes
    # ... and adding it (λ chosen on validation only) raises the mean balanced accuracy
    assert chosen.mean() > local_only.mean() + 0.01
