"""Helpers of the runtime tests: tiny commands and result fingerprints (imported as
``runtime_helpers``: pytest puts this directory on ``sys.path``)."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import torch

from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.spec import TrainingConfig
from fedsim.backend import RayConfig
from fedsim.commands.train import TrainCommand
from fedsim.data.federation import DataConfig
from fedsim.data.synthetic import SyntheticConfig
from fedsim.evaluation.classifier import LinearProbeConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig

TINY_HYPEVAE = FedHypeVAEConfig(latent_dim=4, hidden_dim=16, hidden_layers=1, code_dim=4, hyper_hidden=8,
                                label_dim=4, mmd_samples=2, meta_steps=10, meta_samples=8,
                                training="dp-sgd", observation_variance=False)


MAX_RECORDS = 96
"""The public bound of the tiny federations (their clients have ~64 train records)."""


def tiny_command(algorithm: str = "fedhypevae", *, clients: int = 4, rounds: int = 3,
                 epsilon: float = 1.0, **overrides) -> TrainCommand:
    """A federation that trains in a second or two: 4 clients × ~60 records, 8-d."""
    command = TrainCommand(
        algorithm=algorithm,
        data=DataConfig(num_clients=clients, partition="iid",
                        synthetic=SyntheticConfig(n_samples=100 * clients, dim=8, num_classes=3, intrinsic_dim=2)),
        privacy=PrivacyConfig(epsilon=epsilon, reproducible_noise=True,  # runs are compared bit for bit
                              max_records=MAX_RECORDS),
        training=TrainingConfig(rounds=rounds, batch_size=16),
        fedhypevae=TINY_HYPEVAE,
        evaluation=EvaluationConfig(probe=LinearProbeConfig(steps=5)),
        backend="local",
        ray=RayConfig(num_cpus=2),
        checkpoint_every=0,
        progress=False,
    )
    return replace(command, **overrides)


def _artifact_arrays(value, prefix="artifact") -> dict:
    out = {}
    if isinstance(value, torch.Tensor):
        out[prefix] = value.detach().cpu().numpy()
    elif isinstance(value, np.ndarray):
        out[prefix] = value
    elif isinstance(value, torch.nn.Module):
        out.update(_artifact_arrays(value.state_dict(), prefix))
    elif isinstance(value, dict):
        for key, item in value.items():
            out.update(_artifact_arrays(item, f"{prefix}.{key}"))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            out.update(_artifact_arrays(getattr(value, f.name), f"{prefix}.{f.name}"))
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for key, item in vars(value).items():
            out.update(_artifact_arrays(item, f"{prefix}.{key}"))
    return out


def fingerprint(result) -> dict:
    """Everything a run produced except wall-clock times, as comparable values."""
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in result.round_metrics]
    evaluations = {e.client_id: (e.val_acc.tolist(), {k: v.tolist() for k, v in e.test.items()})
                   for e in result.evaluations}
    return {"rounds": rows, "artifact": _artifact_arrays(result.artifact),
            "evaluations": evaluations, "ledger": list(result.privacy_records)}


def assert_same_results(a, b) -> None:
    fa, fb = fingerprint(a), fingerprint(b)
    assert fa["rounds"] == fb["rounds"]
    assert fa["artifact"].keys() == fb["artifact"].keys() and fa["artifact"]
    for key in fa["artifact"]:
        np.testing.assert_array_equal(fa["artifact"][key], fb["artifact"][key], err_msg=key)
    assert fa["evaluations"] == fb["evaluations"]
    assert fa["ledger"] == fb["ledger"]
