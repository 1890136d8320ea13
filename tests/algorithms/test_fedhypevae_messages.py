"""What crosses the client/server boundary: ClientUpdate refuses private state, the server
checks keys, Eq. 10 is the n_i-weighted mean, and a FedHypeVAE round sends Φ's change only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsim.algorithms.base import ClientUpdate, apply_server_step, check_update_keys, weighted_delta
from fedsim.algorithms.fedhypevae import FedHypeVAEClient, FedHypeVAEConfig, FedHypeVAEServer
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.federation import ClientData
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.models.fedhypevae import is_shared
from fedsim.privacy.config import PrivacyConfig

CONFIG = FedHypeVAEConfig(hidden_dim=16, latent_dim=4, code_dim=4, hyper_hidden=8, label_dim=4, mmd_samples=4,
                          training="dp-sgd", observation_variance=False)
SPEC = FederationSpec(num_clients=2, num_classes=3, dim=12)


def client_data(client_id: int, n: int = 40) -> ClientData:
    rng = np.random.default_rng(client_id)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    y = (np.arange(n) % 3).astype(np.int64)
    return ClientData(client_id, x, y, x[:9], y[:9], x[9:18], y[9:18], 3)


@pytest.mark.parametrize("name", ["encoder.net.0.weight", "client_code", "x", "data.rows", "embeddings"])
def test_client_update_refuses_private_state(name):
    with pytest.raises(ValueError, match="private"):
        ClientUpdate(0, {"decoder.head.bias": torch.zeros(2), name: torch.zeros(2)}, num_samples=5)


def test_client_update_refuses_non_tensors_and_negative_counts():
    with pytest.raises(TypeError):
        ClientUpdate(0, {"decoder.head.bias": [0.0, 1.0]}, num_samples=5)
    with pytest.raises(ValueError):
        ClientUpdate(0, {"decoder.head.bias": torch.zeros(2)}, num_samples=-1)
    ClientUpdate(0, {"decoder.head.bias": torch.zeros(2), "prior.h_omega.0.weight": torch.zeros(1)}, 0)


def test_server_step_refuses_mismatched_keys():
    params = {"decoder.a": torch.zeros(3), "prior.b": torch.zeros(2)}
    extra = ClientUpdate(1, {"decoder.a": torch.ones(3), "prior.b": torch.ones(2), "decoder.c": torch.ones(1)}, 4)
    missing = ClientUpdate(2, {"decoder.a": torch.ones(3)}, 4)
    for bad in (extra, missing):
        with pytest.raises(ValueError, match=f"client {bad.client_id}"):
            apply_server_step(params, [ClientUpdate(0, {"decoder.a": torch.ones(3), "prior.b": torch.ones(2)}, 4), bad],
                              1.0)
        with pytest.raises(ValueError):
            check_update_keys(bad, list(params))
    assert torch.equal(params["decoder.a"], torch.zeros(3))  # nothing applied


def test_eq10_weighted_delta_is_the_sample_weighted_mean():
    g = torch.Generator().manual_seed(0)
    counts = [10, 30, 60]
    deltas = [{"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)} for _ in counts]
    updates = [ClientUpdate(i, d, n) for i, (d, n) in enumerate(zip(deltas, counts))]
    expected = {k: (10 * deltas[0][k] + 30 * deltas[1][k] + 60 * deltas[2][k]) / 100 for k in ("w", "b")}
    result = weighted_delta(updates)
    for k in expected:
        torch.testing.assert_close(result[k], expected[k])
    params = {"w": torch.ones(4, 3), "b": torch.zeros(3)}
    apply_server_step(params, updates, server_lr=0.5)
    torch.testing.assert_close(params["w"], 1 + 0.5 * expected["w"])
    torch.testing.assert_close(params["b"], 0.5 * expected["b"])
    with pytest.raises(ValueError):
        weighted_delta([ClientUpdate(0, deltas[0], 0)])


@pytest.mark.parametrize("epsilon", [2.0, float("inf")])
def test_a_fedhypevae_round_sends_exactly_the_change_of_phi(epsilon):
    server = FedHypeVAEServer(SPEC, CONFIG, seed=0)
    client = FedHypeVAEClient(client_data(0), SPEC, CONFIG, PrivacyConfig(epsilon=epsilon, clip_norm=1.0, max_records=64),
                              TrainingConfig(rounds=2, batch_size=16), EvaluationConfig(), seed=0)
    private_before = {n: p.detach().clone() for n, p in client.model.named_parameters() if not is_shared(n)}
    broadcast = server.broadcast()
    assert set(broadcast) == set(server.shared)
    assert not any(n.startswith(("encoder", "client_code")) for n in broadcast)

    update, diagnostics = client.local_round(broadcast, 0)

    assert set(update.delta) == set(server.shared)
    assert not any(n.split(".")[0] in ("encoder", "client_code") for n in update.delta)
    # n_i = 40 without DP; with DP the public bound (n_i is hidden under add/remove)
    assert update.num_samples == (40 if epsilon == float("inf") else 64) and update.client_id == 0
    local_phi = {n: p.detach() for n, p in client.model.named_parameters() if is_shared(n)}
    for name, delta in update.delta.items():
        torch.testing.assert_close(delta, local_phi[name] - broadcast[name])
    assert any(float(d.abs().max()) > 0 for d in update.delta.values())
    # the private state was trained too, but stays in the client
    changed = [n for n, p in client.model.named_parameters() if not is_shared(n)
               and not torch.equal(p.detach(), private_before[n])]
    assert "client_code" in changed and any(n.startswith("encoder.") for n in changed)
    assert {"reconstruction", "kl", "mmd"} <= set(diagnostics.metrics)

    before = {n: v.clone() for n, v in server.shared.items()}
    server.aggregate([update])  # one client: Φ ← Φ + η Δ
    for name in before:
        torch.testing.assert_close(server.shared[name], before[name] + CONFIG.server_lr * update.delta[name])
