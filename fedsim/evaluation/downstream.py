"""Per-client downstream evaluation shared by every method (docs/design.md, "Evaluation protocol").

The local classifier is always trained on the client's real train split; the global
one on synthetic data (generative methods) or given as probabilities (federated
classifiers).  Probes are trained by ``evaluation.probe`` (:mod:`fedsim.evaluation.probe`:
the reference probe, or the ``tuned`` one chosen on the client's validation split).
The test split only produces metrics (see :mod:`fedsim.evaluation.blend`), and so does
the simulator's global test set (:mod:`fedsim.evaluation.global_test`), when the
driver passes one (``global_test``): it is scored, never fitted or selected on.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from fedsim.evaluation.blend import DEFAULT_LAMBDAS, ClientEvaluation, SelectionRule, blend_evaluation
from fedsim.evaluation.classifier import LinearProbeConfig
from fedsim.evaluation.global_test import GlobalTestSet
from fedsim.evaluation.probe import FittedProbe, fit_probe
from fedsim.validation import check


TestSets = Literal["client", "global", "both"]


@dataclass(frozen=True)
class EvaluationConfig:
    """Downstream protocol options (tyro-exposed)."""

    selection: SelectionRule = "per-client"
    """How λ is chosen on validation data: by each client on its own validation split
    (``per-client``, default: no client's data is read by anyone else, so the choice needs
    no noise) or one λ for all clients by mean validation accuracy (``global``, the
    reference code's protocol: it reads every client's validation records without noise,
    so the run's note says the reported metrics are simulator-side)."""
    synthetic_labels: Literal["client", "global"] = "client"
    """Labels of each client's synthetic set: its own train label counts (reference) or draws from the DP global label distribution."""
    probe: LinearProbeConfig = LinearProbeConfig()
    """Linear classifier options (--evaluation.probe.preset reference|tuned)."""
    test: TestSets = "both"
    """Test sets scored at the λ chosen on validation: each client's own test split (``client``: acc, bacc, f1), a class-balanced set pooled from all clients' test splits (``global``: global_acc, global_bacc, global_f1; simulator-side, never used for any choice), or ``both``."""

    def validate(self, prefix: str = "--evaluation.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("selection", self.selection in typing.get_args(SelectionRule), "one of "
             + ", ".join(typing.get_args(SelectionRule))),
            ("synthetic_labels", self.synthetic_labels in ("client", "global"), "one of client, global"),
            ("test", self.test in typing.get_args(TestSets), "one of " + ", ".join(typing.get_args(TestSets))),
        ])
        self.probe.validate(prefix + "probe.")


def local_probe(data, probe: LinearProbeConfig, seed: int) -> FittedProbe:
    """The probe trained on the client's real train split (chosen on its validation split)."""
    return fit_probe(data.x_train, data.y_train, data.num_classes, data.x_val, data.y_val, probe, seed,
                     "local", data.client_id)


def local_probabilities(data, probe: LinearProbeConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation and test probabilities of the classifier trained on real train data."""
    fitted = local_probe(data, probe, seed)
    return fitted.probabilities(data.x_val), fitted.probabilities(data.x_test)


def scored_global_test(global_test: GlobalTestSet | None, local_proba: Callable[[np.ndarray], np.ndarray],
                       global_proba: Callable[[np.ndarray], np.ndarray]):
    """``(y, local probabilities, global probabilities)`` on the global test set for
    :func:`~fedsim.evaluation.blend.blend_evaluation`, or None without one."""
    if global_test is None:
        return None
    return global_test.y, local_proba(global_test.x), global_proba(global_test.x)


def evaluate_with_synthetic(data, synthetic_x: np.ndarray, synthetic_y: np.ndarray,
                            probe: LinearProbeConfig, seed: int,
                            global_test: GlobalTestSet | None = None) -> ClientEvaluation:
    """Blend of a classifier on real train data and one on the synthetic set (both
    chosen on the client's real validation split); also scored on ``global_test``."""
    local = local_probe(data, probe, seed)
    synthetic = fit_probe(synthetic_x, synthetic_y, data.num_classes, data.x_val, data.y_val, probe, seed,
                          "global", data.client_id)
    return blend_evaluation(data.client_id, data.y_val, data.y_test, local.probabilities(data.x_val),
                            synthetic.probabilities(data.x_val), local.probabilities(data.x_test),
                            synthetic.probabilities(data.x_test), DEFAULT_LAMBDAS,
                            {"local": local.name, "global": synthetic.name},
                            scored_global_test(global_test, local.probabilities, synthetic.probabilities))


def evaluate_with_global_model(data, global_proba: Callable[[np.ndarray], np.ndarray],
                               probe: LinearProbeConfig, seed: int,
                               global_test: GlobalTestSet | None = None) -> ClientEvaluation:
    """Blend of a classifier on real train data and a given global model (FedLambda);
    also scored on ``global_test``."""
    local = local_probe(data, probe, seed)
    return blend_evaluation(data.client_id, data.y_val, data.y_test, local.probabilities(data.x_val),
                            global_proba(data.x_val), local.probabilities(data.x_test),
                            global_proba(data.x_test), DEFAULT_LAMBDAS, {"local": local.name},
                            scored_global_test(global_test, local.probabilities, global_proba))


def evaluate_generator(data, artifact, evaluation: EvaluationConfig, seed: int,
                       global_test: GlobalTestSet | None = None) -> ClientEvaluation:
    """Reference protocol for a generative method: the client samples the shared
    generator (``artifact.sample(labels, generator)``) with labels from
    :func:`synthetic_labels_for`, then blends real-data and synthetic-data classifiers."""
    from fedsim.seeding import torch_generator

    generator = torch_generator(seed, "synthesis", data.client_id)
    labels = synthetic_labels_for(data, artifact.sample_labels, evaluation.synthetic_labels, generator)
    synthetic = artifact.sample(labels, generator)
    return evaluate_with_synthetic(data, synthetic, labels, evaluation.probe, seed, global_test)


def evaluate_global_only(data, global_proba: Callable[[np.ndarray], np.ndarray],
                         global_test: GlobalTestSet | None = None) -> ClientEvaluation:
    """A federated global model alone (FedAvg, FedProx): the blend at λ = 0 only, so no
    local classifier is trained and nothing is selected; also scored on ``global_test``."""
    val, test = global_proba(data.x_val), global_proba(data.x_test)
    return blend_evaluation(data.client_id, data.y_val, data.y_test, val, val, test, test, (0.0,),
                            None, scored_global_test(global_test, global_proba, global_proba))


def synthetic_labels_for(data, artifact_sample_labels, policy: str, generator) -> np.ndarray:
    """The labels a client synthesises: its own train label counts, or DP global draws."""
    if policy == "client":
        return np.sort(data.y_train.astype(np.int64))
    return artifact_sample_labels(len(data.y_train), generator)
