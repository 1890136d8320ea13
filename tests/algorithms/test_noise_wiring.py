"""Every private method draws its DP randomness from the secure source by default, and from
the seeded one only with ``--privacy.reproducible-noise`` (or at ε = ∞, where there is no DP)."""

from __future__ import annotations

import math

import pytest
import torch

from baselines_toy import MAX_RECORDS, spec_of, toy_federation
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


def _released(record, **privacy):
    """What client 0 of a fresh toy federation (run seed 0) releases first: its update's
    ΔΦ for a DP-SGD method, its statistics for dp-stats (one local round from the server's
    broadcast, all built from the same seed)."""
    from fedsim.algorithms.registry import algorithm_module

    config = FedAvgConfig(private=True) if record.name == "fedavg" else record.config_type()()
    settings = RunSettings(record.name, config, PrivacyConfig(max_records=MAX_RECORDS, **privacy),
                           TrainingConfig(rounds=1, batch_size=16), EvaluationConfig(), 0)
    federation = toy_federation()
    module = algorithm_module(record.name)
    client = module.make_client(federation.clients[0], spec_of(federation), settings)
    update, _ = client.local_round(module.make_server(spec_of(federation), settings).broadcast(), 0)
    if not update.delta:
        statistics = client.release().statistics
        return {name: getattr(statistics, name) for name in ("counts", "sums", "second_moments")}
    return update.delta


@pytest.mark.parametrize("record", PRIVATE, ids=[r.name for r in PRIVATE])
def test_the_published_seed_does_not_rebuild_the_released_noise(record):
    """Issue 14, problem 1: someone holding config.json (the seed) and every record re-runs
    the client and must NOT get the same release (the noise is not a function of the seed);
    with --privacy.reproducible-noise they do (the flag's documented weakness)."""
    first, second = _released(record, epsilon=1.0), _released(record, epsilon=1.0)
    assert set(first) == set(second)
    assert not all(torch.equal(first[name], second[name]) for name in first), record.name
    rebuilt = [_released(record, epsilon=1.0, reproducible_noise=True) for _ in range(2)]
    assert all(torch.equal(rebuilt[0][name], rebuilt[1][name]) for name in rebuilt[0]), record.name
