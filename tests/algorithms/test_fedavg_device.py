"""``--device`` in the FedAvg family: one place (``RunSettings.device_here``) decides
where a client's model and data and the server's Φ live, and on a CPU-only machine
``auto`` runs exactly as ``cpu`` (bit for bit, reproducible noise, DP and non-DP)."""

from __future__ import annotations

import pytest
import torch

from baselines_toy import run, spec_of, toy_federation
from fedsim.algorithms import fedavg
from fedsim.algorithms.dp_fedavg import DPFedAvgConfig, DPFedProxConfig
from fedsim.algorithms.fedlambda import FedLambdaConfig
from fedsim.algorithms.registry import RunSettings
from fedsim.algorithms.spec import TrainingConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig


@pytest.mark.parametrize("algorithm,config,epsilon", [("dp-fedavg", DPFedAvgConfig(), 2.0),
                                                       ("dp-fedprox", DPFedProxConfig(), 2.0),
                                                       ("fedlambda", FedLambdaConfig(), float("inf"))])
def test_auto_on_a_cpu_machine_is_cpu_bit_for_bit(monkeypatch, algorithm, config, epsilon):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    federation = toy_federation()
    results = {}
    for device in ("cpu", "auto"):
        result, rows, pool, server = run(algorithm, config, federation, rounds=2, epsilon=epsilon, device=device)
        assert all(client.device == torch.device("cpu") for client in pool.clients.values())
        results[device] = (result.round_metrics, rows, {k: v.clone() for k, v in server.shared.items()})
    (metrics_cpu, rows_cpu, shared_cpu), (metrics_auto, rows_auto, shared_auto) = results["cpu"], results["auto"]
    assert all(torch.equal(shared_cpu[name], shared_auto[name]) for name in shared_cpu)
    strip = [{k: v for k, v in row.items() if "seconds" not in k} for row in metrics_cpu]
    assert strip == [{k: v for k, v in row.items() if "seconds" not in k} for row in metrics_auto]
    assert rows_cpu == rows_auto


def test_every_client_and_server_tensor_follows_the_one_resolved_device(monkeypatch):
    """The meta device stands in for a GPU (placement only, no arithmetic)."""
    meta = torch.device("meta")
    monkeypatch.setattr(RunSettings, "device_here", lambda self: meta)
    monkeypatch.setattr(RunSettings, "server_device_here", lambda self: meta)
    federation = toy_federation()
    settings = RunSettings("dp-fedavg", DPFedAvgConfig(), PrivacyConfig(max_records=128),
                           TrainingConfig(rounds=1, batch_size=16), EvaluationConfig(), 0, "cuda")
    client = fedavg.make_client(federation.clients[0], spec_of(federation), settings)
    assert client.device == meta
    assert all(p.device == meta for p in client.model.parameters())
    assert client.x.device == meta and client.y.device == meta
    server = fedavg.make_server(spec_of(federation), settings)
    assert all(value.device == meta for value in server.shared.values())
