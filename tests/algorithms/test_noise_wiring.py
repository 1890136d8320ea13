"""Every private method draws its DP randomness from the secure source by default, and from
the seeded one only with ``--privacy.reproducible-noise`` (or at ε = ∞, where there is no DP)."""

from __future__ import annotations

import math

import pytest

from baselines_toy import spec_of, toy_federation
from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.registry import METHODS, RunSettings
from fedsim.algorithms.spec import TrainingConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.noise import SeededNoise
from fedsim.privacy.secure_noise import SecureNoise
from fedsim.simulation import LocalClientPool

PRIVATE = [record for record in METHODS if record.privacy == "dp"] + [
    record for record in METHODS if record.privacy == "optional"][:1]


def _clients(record, **privacy):
    config = record.config_type()()
    if record.privacy == "optional":
        config = FedAvgConfig(private=True) if record.name == "fedavg" else config
    settings = RunSettings(record.name, config, PrivacyConfig(**privacy), TrainingConfig(rounds=1, batch_size=16),
                           EvaluationConfig(), 0)
    federation = toy_federation()
    return LocalClientPool(federation, spec_of(federation), settings).clients.values()


@pytest.mark.parametrize("record", PRIVATE, ids=[r.name for r in PRIVATE])
def test_private_methods_use_the_secure_source_by_default(record):
    for client in _clients(record, epsilon=1.0):
        assert isinstance(client.privacy_state.noise, SecureNoise), record.name


@pytest.mark.parametrize("record", PRIVATE, ids=[r.name for r in PRIVATE])
def test_reproducible_noise_and_no_dp_use_the_seeded_source(record):
    for privacy in ({"epsilon": 1.0, "reproducible_noise": True}, {"epsilon": math.inf}):
        for client in _clients(record, **privacy):
            assert isinstance(client.privacy_state.noise, SeededNoise), (record.name, privacy)
