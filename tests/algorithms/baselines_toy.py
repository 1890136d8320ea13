"""A separable toy federation, a one-call runner and shared checks for the baseline tests."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from fedsim.algorithms.registry import RunSettings, algorithm_module
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.dataset import EmbeddingDataset
from fedsim.data.federation import DataConfig, Federation, build_federation
from fedsim.evaluation.blend import chosen_results
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.evaluation.global_test import global_test_set
from fedsim.privacy.config import PrivacyConfig
from fedsim.simulation import LocalClientPool, run_federation


MAX_RECORDS = 64
"""The public bound of the toy federations (3 clients × 80 records: ~51 train records each)."""


def opacus_rdp_epsilon(history, delta: float) -> float:
    """ε of ``history`` ``[(σ, q, steps), ...]`` from a brand-new Opacus RDP accountant
    (the independent reference)."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(float(s), float(q), int(t)) for s, q, t in history]
    return float(accountant.get_epsilon(delta))


def toy_federation(num_clients: int = 3, per_client: int = 80, dim: int = 6, classes: int = 3,
                   seed: int = 0, partition: str = "iid") -> Federation:
    """Gaussian blobs (std 0.5) around class means 3·e_c: linearly separable."""
    rng = np.random.default_rng(seed)
    n = num_clients * per_client
    y = np.arange(n) % classes
    x = 0.5 * rng.standard_normal((n, dim)) + 3.0 * np.eye(classes, dim)[y]
    dataset = EmbeddingDataset(x=x.astype(np.float32), y=y.astype(np.int64), name="toy")
    return build_federation(dataset, DataConfig(partition=partition, num_clients=num_clients, min_samples=0,
                                                alpha=0.5), seed)


def spec_of(federation: Federation) -> FederationSpec:
    return FederationSpec(federation.num_clients, federation.num_classes, federation.dim)


def run(algorithm: str, method, federation: Federation, rounds: int = 5, epsilon: float = float("inf"),
        local_epochs: int = 1, seed: int = 0, selection: str = "global", batch_size: int | None = None,
        global_test: bool = True, device: str = "cpu", evaluation: EvaluationConfig | None = None, **privacy):
    """Run a whole federation in process; return (result, per-client rows, pool, server)
    (``batch_size`` None: the method's default B from its registry record; ``device``: ``--device``; ``global_test``:
    also score the class-balanced global test set of ``federation``'s test splits; ``evaluation``: the
    downstream options, ``selection`` replacing its own).  Toy runs are
    compared bit for bit, so their DP noise is the seeded one unless ``reproducible_noise=False``
    is passed (the secure source is tested in tests/privacy/test_secure_noise.py)."""
    privacy.setdefault("reproducible_noise", True)
    privacy.setdefault("max_records", MAX_RECORDS)
    settings = RunSettings(algorithm, method, PrivacyConfig(epsilon=epsilon, **privacy),
                           TrainingConfig(rounds=rounds, local_epochs=local_epochs, batch_size=batch_size),
                           dataclasses.replace(evaluation or EvaluationConfig(), selection=selection), seed, device)
    module = algorithm_module(algorithm)
    spec = spec_of(federation)
    server = module.make_server(spec, settings)
    pool = LocalClientPool(federation, spec, settings)
    result = run_federation(server, pool, settings,
                            global_test=global_test_set(federation) if global_test else None)
    return result, chosen_results(result.evaluations, selection), pool, server


def poison_test(federation: Federation, seed: int = 1) -> Federation:
    """The same federation with every client's test labels permuted and test features replaced by noise."""
    rng = np.random.default_rng(seed)
    clients = tuple(dataclasses.replace(c, y_test=rng.permutation(c.y_test),
                                        x_test=rng.standard_normal(c.x_test.shape).astype(np.float32))
                    for c in federation.clients)
    return dataclasses.replace(federation, clients=clients)


def label_agreement(artifact, federation, per_class: int = 50) -> float:
    """Share of synthetic samples whose nearest real class mean is their own class."""
    x = np.concatenate([c.x_train for c in federation.clients])
    y = np.concatenate([c.y_train for c in federation.clients])
    means = np.stack([x[y == k].mean(0) for k in range(federation.num_classes)])
    labels = np.repeat(np.arange(federation.num_classes), per_class)
    samples = artifact.sample(labels, torch.Generator().manual_seed(0))
    distances = ((samples[:, None, :] - means[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == labels).mean())


def mean(rows, key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def assert_state_dict_round_trip(client, broadcast) -> None:
    """A client restored from its ``state_dict`` repeats the same round exactly
    (parameters, optimizer, accountant and random generator all restored)."""
    state = copy.deepcopy(client.state_dict())
    expected, _ = client.local_round(broadcast, 1)
    expected_history = list(client.privacy_state.accountant.history)
    client.load_state_dict(state)
    again, _ = client.local_round(broadcast, 1)
    assert list(client.privacy_state.accountant.history) == expected_history  # restored, not appended to
    assert set(expected.delta) == set(again.delta)
    for name in expected.delta:
        assert torch.equal(expected.delta[name], again.delta[name])
