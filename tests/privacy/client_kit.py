"""Helpers of the client-level privacy tests: a small client dataset, its neighbour (one
train record removed) and a client of any method on it, with seeded (reproducible) noise."""

from __future__ import annotations

import dataclasses

import numpy as np

from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.registry import RunSettings, algorithm_module, method
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.commands.train import TrainCommand
from fedsim.data.federation import ClientData
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig

TINY_HYPEVAE = FedHypeVAEConfig(latent_dim=4, hidden_dim=16, hidden_layers=1, code_dim=4, hyper_hidden=8,
                                label_dim=4, mmd_samples=2, meta_steps=10, meta_samples=8,
                                training="dp-sgd", observation_variance=False)
PRIVACY = PrivacyConfig(epsilon=1.0, max_records=64, reproducible_noise=True)
DIM, CLASSES = 8, 3


def client_data(n: int, seed: int = 0) -> ClientData:
    """Client 0 with ``n`` train records (and 12 validation, 12 test) of 3 blobs in 8-d."""
    rng = np.random.default_rng(seed)

    def split(size):
        y = np.arange(size) % CLASSES
        x = rng.standard_normal((size, DIM)) + 2 * np.eye(CLASSES, DIM)[y]
        return x.astype(np.float32), y.astype(np.int64)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(n), split(12), split(12)
    return ClientData(0, x_train, y_train, x_val, y_val, x_test, y_test, CLASSES)


def without_record(data: ClientData, j: int) -> ClientData:
    """``data`` with train record ``j`` removed (an add/remove neighbour)."""
    keep = np.arange(len(data.y_train)) != j
    return dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])


def make_client(algorithm: str, data: ClientData, privacy: PrivacyConfig = PRIVACY, rounds: int = 2):
    """``(client, server)`` of ``algorithm`` (FedAvg with DP) on ``data``, batch 16."""
    configs = {"fedhypevae": TINY_HYPEVAE, "fedavg": FedAvgConfig(private=True)}
    config = configs.get(algorithm) or getattr(TrainCommand(), method(algorithm).field)
    settings = RunSettings(algorithm, config, privacy, TrainingConfig(rounds=rounds, batch_size=16),
                           EvaluationConfig(), seed=3)
    spec = FederationSpec(1, CLASSES, DIM)
    module = algorithm_module(algorithm)
    return module.make_client(data, spec, settings), module.make_server(spec, settings)
