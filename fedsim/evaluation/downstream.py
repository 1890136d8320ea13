"""Per-client downstream evaluation shared by every method (DESIGN.md, reference protocol).

The local classifier is always trained on the client's real train split; the global
one on synthetic data (generative methods) or given as probabilities (federated
classifiers).  The test split only produces metrics (see :mod:`fedsim.evaluation.blend`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from fedsim.evaluation.blend import DEFAULT_LAMBDAS, ClientEvaluation, SelectionRule, blend_evaluation
from fedsim.evaluation.classifier import LinearProbeConfig, predict_proba, train_linear
from fedsim.validation import check


@dataclass(frozen=True)
class EvaluationConfig:
    """Downstream protocol options (tyro-exposed)."""

    selection: SelectionRule = "global"
    """How λ is chosen on validation data: one for all clients (``global``, the reference) or ``per-client``."""
    synthetic_labels: Literal["client", "global"] = "client"
    """Labels of each client's synthetic set: its own train label counts (reference) or draws from the DP global label distribution."""
    probe: LinearProbeConfig = LinearProbeConfig()
    """Linear classifier training options."""

    def validate(self, prefix: str = "--evaluation.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("selection", self.selection in typing.get_args(SelectionRule), "one of "
             + ", ".join(typing.get_args(SelectionRule))),
            ("synthetic_labels", self.synthetic_labels in ("client", "global"), "one of client, global"),
        ])
        self.probe.validate(prefix + "probe.")


def local_probabilities(data, probe: LinearProbeConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation and test probabilities of the classifier trained on real train data."""
    model = train_linear(data.x_train, data.y_train, data.num_classes, probe, seed, "local", data.client_id)
    return predict_proba(model, data.x_val), predict_proba(model, data.x_test)


def evaluate_with_synthetic(data, synthetic_x: np.ndarray, synthetic_y: np.ndarray,
                            probe: LinearProbeConfig, seed: int) -> ClientEvaluation:
    """Blend of a classifier on real train data and one on the synthetic set."""
    local_val, local_test = local_probabilities(data, probe, seed)
    model = train_linear(synthetic_x, synthetic_y, data.num_classes, probe, seed, "global", data.client_id)
    return blend_evaluation(data.client_id, data.y_val, data.y_test, local_val,
                            predict_proba(model, data.x_val), local_test,
                            predict_proba(model, data.x_test), DEFAULT_LAMBDAS)


def evaluate_with_global_model(data, global_proba: Callable[[np.ndarray], np.ndarray],
                               probe: LinearProbeConfig, seed: int) -> ClientEvaluation:
    """Blend of a classifier on real train data and a given global model (FedLambda)."""
    local_val, local_test = local_probabilities(data, probe, seed)
    return blend_evaluation(data.client_id, data.y_val, data.y_test, local_val,
                            global_proba(data.x_val), local_test, global_proba(data.x_test),
                            DEFAULT_LAMBDAS)


def evaluate_generator(data, artifact, evaluation: EvaluationConfig, seed: int) -> ClientEvaluation:
    """Reference protocol for a generative method: the client samples the shared
    generator (``artifact.sample(labels, generator)``) with labels from
    :func:`synthetic_labels_for`, then blends real-data and synthetic-data classifiers."""
    from fedsim.seeding import torch_generator

    generator = torch_generator(seed, "synthesis", data.client_id)
    labels = synthetic_labels_for(data, artifact.sample_labels, evaluation.synthetic_labels, generator)
    synthetic = artifact.sample(labels, generator)
    return evaluate_with_synthetic(data, synthetic, labels, evaluation.probe, seed)


def evaluate_global_only(data, global_proba: Callable[[np.ndarray], np.ndarray]) -> ClientEvaluation:
    """A federated global model alone (FedAvg, FedProx): the blend at λ = 0 only, so no
    local classifier is trained and nothing is selected."""
    val, test = global_proba(data.x_val), global_proba(data.x_test)
    return blend_evaluation(data.client_id, data.y_val, data.y_test, val, val, test, test, (0.0,))


def synthetic_labels_for(data, artifact_sample_labels, policy: str, generator) -> np.ndarray:
    """The labels a client synthesises: its own train label counts, or DP global draws."""
    if policy == "client":
        return np.sort(data.y_train.astype(np.int64))
    return artifact_sample_labels(len(data.y_train), generator)
