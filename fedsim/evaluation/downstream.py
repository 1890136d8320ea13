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

import hashlib
import typing
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from fedsim.evaluation.blend import DEFAULT_LAMBDAS, ClientEvaluation, LambdaMetric, SelectionRule, blend_evaluation
from fedsim.evaluation.classifier import LinearProbeConfig
from fedsim.evaluation.global_test import GlobalTestSet
from fedsim.evaluation.mixing import DATA_LAMBDAS, evaluate_data_mix
from fedsim.evaluation.probe import FittedProbe, fit_probe
from fedsim.validation import check, finite


TestSets = Literal["client", "global", "both"]
SyntheticLabels = Literal["client", "global", "balanced"]
Mix = Literal["prediction", "data"]


def parse_synthetic_size(text: str) -> tuple[str, float] | None:
    """``("multiple", k)`` for ``"<k>x"`` (k > 0), ``("count", n)`` for an integer n ≥ 1, else None."""
    text = str(text).strip()
    try:
        if text.endswith("x"):
            multiple = float(text[:-1])
            return ("multiple", multiple) if finite(multiple) and multiple > 0 else None
        count = int(text)
    except ValueError:
        return None
    return ("count", float(count)) if count >= 1 else None


@dataclass(frozen=True)
class EvaluationConfig:
    """Downstream protocol options (tyro-exposed)."""

    selection: SelectionRule = "per-client"
    """How λ is chosen on validation data: by each client on its own validation split
    (``per-client``, default: no client's data is read by anyone else, so the choice needs
    no noise) or one λ for all clients by mean validation accuracy (``global``, the
    reference code's protocol: it reads every client's validation records without noise,
    so the run's note says the reported metrics are simulator-side)."""
    lambda_guard: float = 1.0
    """``per-client`` rule: λ = 1 (the local probe alone) stays unless the validation-best λ beats it by more than this many paired standard errors of the difference in --evaluation.lambda-metric on the client's validation records (fedsim/evaluation/blend.py); 0 = the plain arg-max, ties to λ = 0 (before evaluation protocol revision 3)."""
    lambda_metric: LambdaMetric = "accuracy"
    """The validation score λ is chosen (and guarded) by: accuracy (``accuracy``, the reference code's) or balanced accuracy over the classes present in the client's validation split (``balanced``, the metric the tables report; the guard's paired test is then balanced over the classes too)."""
    synthetic_labels: SyntheticLabels = "client"
    """Labels of each client's synthetic set: in proportion to its own train label counts (``client``, reference), draws from the DP global label distribution (``global``; pooled-real: from the pooled train labels), or equal counts of every class (``balanced``)."""
    synthetic_size: str = "1x"
    """Records in each client's synthetic set (and pooled-real's draw): ``<k>x`` = k times the client's train size (``1x``, reference), or an absolute count such as ``2000``."""
    mix: Mix = "prediction"
    """How the synthetic set is used: a probe on it blended with the local probe at the prediction level, λ·p_local + (1−λ)·p_syn (``prediction``, reference), or one probe on the real train split ∪ the synthetic set with loss λ·L_real + (1−λ)·L_syn (``data``, fedsim/evaluation/mixing.py); λ chosen on validation either way."""
    mix_lambdas: tuple[float, ...] = DATA_LAMBDAS
    """``--evaluation.mix data``: grid of λ, the real records' share of the loss (1 = the local probe alone, 0 = the synthetic probe alone); must contain 1 so validation can fall back to local-only."""
    probe: LinearProbeConfig = LinearProbeConfig()
    """Linear classifier options (--evaluation.probe.preset reference|tuned)."""
    test: TestSets = "both"
    """Test sets scored at the λ chosen on validation: each client's own test split (``client``: acc, bacc, f1), a class-balanced set pooled from all clients' test splits (``global``: global_acc, global_bacc, global_f1; simulator-side, never used for any choice), or ``both``."""

    def validate(self, prefix: str = "--evaluation.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("selection", self.selection in typing.get_args(SelectionRule), "one of "
             + ", ".join(typing.get_args(SelectionRule))),
            ("lambda_guard", finite(self.lambda_guard) and self.lambda_guard >= 0, "a finite number >= 0"),
            ("lambda_metric", self.lambda_metric in typing.get_args(LambdaMetric),
             "one of " + ", ".join(typing.get_args(LambdaMetric))),
            ("synthetic_labels", self.synthetic_labels in typing.get_args(SyntheticLabels),
             "one of " + ", ".join(typing.get_args(SyntheticLabels))),
            ("synthetic_size", parse_synthetic_size(self.synthetic_size) is not None,
             "a multiple of the client's train size such as 4x or a record count such as 2000"),
            ("mix", self.mix in typing.get_args(Mix), "one of " + ", ".join(typing.get_args(Mix))),
            ("mix_lambdas", all(finite(v) and 0 <= v <= 1 for v in self.mix_lambdas) and 1.0 in self.mix_lambdas,
             "numbers in [0, 1] that include 1 (the local probe alone)"),
            ("test", self.test in typing.get_args(TestSets), "one of " + ", ".join(typing.get_args(TestSets))),
        ])
        self.probe.validate(prefix + "probe.")

    def synthetic_count(self, train_size: int) -> int:
        """Records of a client's synthetic set for a train split of ``train_size`` records."""
        kind, value = parse_synthetic_size(self.synthetic_size) or ("multiple", 1.0)
        return int(value) if kind == "count" else max(1, int(round(value * train_size)))


LOCAL_PROBE_CACHE_SIZE = 256
"""Local probes kept per process (a few hundred kB each: one table's clients × runs)."""

_local_probes: OrderedDict[str, FittedProbe] = OrderedDict()


def local_probe_key(data, probe: LinearProbeConfig, seed: int) -> str:
    """SHA-256 of everything :func:`local_probe` reads: the client's id, class count, train
    and validation arrays (bytes, dtype and shape), the probe options and the seed."""
    digest = hashlib.sha256(repr((data.client_id, data.num_classes, probe, seed)).encode())
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        array = np.ascontiguousarray(array)
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(array.data)
    return digest.hexdigest()


def local_probe(data, probe: LinearProbeConfig, seed: int) -> FittedProbe:
    """The probe trained on the client's real train split (chosen on its validation split).

    Memoised per process (LRU, :data:`LOCAL_PROBE_CACHE_SIZE`) by :func:`local_probe_key`:
    :func:`~fedsim.evaluation.probe.fit_probe` is a deterministic function of those inputs
    (seeded reference probe and folds), and every method and bound of a table evaluated on
    one federation × seed needs the same local probes, which are half of an evaluation's
    time with the tuned probe's folds.  The returned probe is shared: do not mutate it."""
    key = local_probe_key(data, probe, seed)
    if key in _local_probes:
        _local_probes.move_to_end(key)
        return _local_probes[key]
    fitted = fit_probe(data.x_train, data.y_train, data.num_classes, data.x_val, data.y_val, probe, seed,
                       "local", data.client_id)
    _local_probes[key] = fitted
    while len(_local_probes) > LOCAL_PROBE_CACHE_SIZE:
        _local_probes.popitem(last=False)
    return fitted


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
                            global_test: GlobalTestSet | None = None, mix: Mix = "prediction",
                            mix_lambdas: tuple[float, ...] = DATA_LAMBDAS) -> ClientEvaluation:
    """Blend of a classifier on real train data and one on the synthetic set (both
    chosen on the client's real validation split), or with ``mix="data"`` one classifier
    per λ of ``mix_lambdas`` on both sets (:mod:`fedsim.evaluation.mixing`); also scored
    on ``global_test``."""
    local = local_probe(data, probe, seed)
    synthetic = fit_probe(synthetic_x, synthetic_y, data.num_classes, data.x_val, data.y_val, probe, seed,
                          "global", data.client_id)
    if mix == "data":
        return evaluate_data_mix(data, local, synthetic, synthetic_x, synthetic_y, probe, seed, mix_lambdas,
                                 global_test)
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
    :func:`synthetic_labels_for`, then mixes real-data and synthetic-data classifiers
    (``evaluation.mix``)."""
    from fedsim.seeding import torch_generator

    generator = torch_generator(seed, "synthesis", data.client_id)
    labels = synthetic_labels_for(data, lambda size: artifact.sample_labels(size, generator), evaluation)
    synthetic = artifact.sample(labels, generator)
    return evaluate_with_synthetic(data, synthetic, labels, evaluation.probe, seed, global_test, evaluation.mix,
                                   evaluation.mix_lambdas)


def evaluate_global_only(data, global_proba: Callable[[np.ndarray], np.ndarray],
                         global_test: GlobalTestSet | None = None) -> ClientEvaluation:
    """A federated global model alone (FedAvg, FedProx): the blend at λ = 0 only, so no
    local classifier is trained and nothing is selected; also scored on ``global_test``."""
    val, test = global_proba(data.x_val), global_proba(data.x_test)
    return blend_evaluation(data.client_id, data.y_val, data.y_test, val, val, test, test, (0.0,),
                            None, scored_global_test(global_test, global_proba, global_proba))


def proportional_counts(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` in proportion to ``weights`` (largest remainders,
    ties to the lower class): exactly ``weights`` when they are counts summing to ``total``."""
    share = total * np.asarray(weights, dtype=np.float64) / np.sum(weights)
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[:total - counts.sum()]] += 1
    return counts


def synthetic_labels_for(data, draw_labels: Callable[[int], np.ndarray], evaluation: EvaluationConfig) -> np.ndarray:
    """The labels a client synthesises, ``evaluation.synthetic_count(train size)`` of them
    (sorted unless drawn): in proportion to its own train label counts (``client``; at
    ``1x`` exactly its train labels), ``draw_labels(size)`` (``global``: the generator's DP
    label distribution), or equal counts of every class (``balanced``)."""
    size = evaluation.synthetic_count(len(data.y_train))
    if evaluation.synthetic_labels == "global":
        return draw_labels(size)
    weights = (np.bincount(data.y_train.astype(np.int64), minlength=data.num_classes)
               if evaluation.synthetic_labels == "client" else np.ones(data.num_classes))
    return np.repeat(np.arange(data.num_classes), proportional_counts(weights, size))
