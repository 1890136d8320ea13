"""Data-level mixing of real and synthetic records (``--evaluation.mix data``, issue 16).

Instead of blending the predictions of two probes (:mod:`fedsim.evaluation.blend`), the
client trains ONE probe on its real train split together with the synthetic set, for
each λ of ``--evaluation.mix-lambdas``, minimising

    f_λ(W, b) = λ · L_real(W, b) + (1 − λ) · L_syn(W, b) + ‖W‖² / (2 C n),

with ``L_real``, ``L_syn`` the probe's mean cross-entropy over each set (class-balanced
within the set for the tuned probe's ``class_weight="balanced"``; plain for the reference
probe) and ``n`` the records of the union (:func:`fedsim.evaluation.probe.mixture_weights`).
Equivalently a synthetic record weighs ``w = ((1 − λ)/λ) · n_real/n_syn`` times a real one
(before class balancing).  The end points are not refitted: λ = 1 (w = 0) IS the local
probe, so validation can always fall back to local-only exactly, and λ = 0 is the probe on
the synthetic set alone (the blend's λ = 0).  Each probe chooses its regularisation on the
client's validation split (:func:`fedsim.evaluation.probe.fit_probe`), and λ is chosen on
validation by ``--evaluation.selection`` and ``--evaluation.lambda-metric`` exactly as the blend's λ
(:func:`fedsim.evaluation.blend.select_lambdas`): the result is a
:class:`~fedsim.evaluation.blend.ClientEvaluation` over the λ grid.  The test split and the
global test set are only scored.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fedsim.evaluation.blend import ClientEvaluation, validation_hits
from fedsim.evaluation.classifier import LinearProbeConfig
from fedsim.evaluation.global_test import GlobalTestSet
from fedsim.evaluation.metrics import classification_metrics
from fedsim.evaluation.probe import FittedProbe, Probabilities, fit_probe

DATA_LAMBDAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
"""Default grid of λ (the real set's share of the loss) for ``--evaluation.mix data``."""


def mixed_probe(data, synthetic_x: np.ndarray, synthetic_y: np.ndarray, lam: float,
                probe: LinearProbeConfig, seed: int) -> FittedProbe:
    """The probe minimising ``f_λ`` (module docstring) for 0 < λ < 1, chosen on the client's
    validation split."""
    x = np.concatenate([data.x_train, synthetic_x.astype(data.x_train.dtype)])
    y = np.concatenate([data.y_train.astype(np.int64), np.asarray(synthetic_y, dtype=np.int64)])
    groups = np.repeat([0, 1], [len(data.y_train), len(synthetic_y)])
    return fit_probe(x, y, data.num_classes, data.x_val, data.y_val, probe, seed, "mix", data.client_id,
                     f"{lam:g}", mixture=(groups, (lam, 1.0 - lam)))


def scored_candidates(client_id: int, data, probabilities: Sequence[Probabilities], lambdas: Sequence[float],
                      probes: dict[str, str], global_test: GlobalTestSet | None = None) -> ClientEvaluation:
    """Validation accuracy and test metrics (and global-test ones) of one classifier per λ."""
    val_probabilities = [proba(data.x_val) for proba in probabilities]
    val_acc = [classification_metrics(data.y_val, p)["acc"] for p in val_probabilities]
    test: dict[str, list[float]] = {"acc": [], "bacc": [], "f1": []}
    if global_test is not None:
        test.update({"global_acc": [], "global_bacc": [], "global_f1": []})
    for proba in probabilities:
        scores = classification_metrics(data.y_test, proba(data.x_test))
        if global_test is not None:
            pooled = classification_metrics(global_test.y, proba(global_test.x))
            scores = scores | {f"global_{name}": value for name, value in pooled.items()}
        for name in test:
            test[name].append(scores[name])
    val_right = np.stack([validation_hits(data.y_val, p) for p in val_probabilities]) if val_probabilities else None
    return ClientEvaluation(client_id, tuple(lambdas), np.asarray(val_acc),
                            {k: np.asarray(v) for k, v in test.items()}, dict(probes), val_right,
                            np.asarray(data.y_val))


def evaluate_data_mix(data, local: FittedProbe, synthetic: FittedProbe, synthetic_x: np.ndarray,
                      synthetic_y: np.ndarray, probe: LinearProbeConfig, seed: int,
                      lambdas: Sequence[float] = DATA_LAMBDAS,
                      global_test: GlobalTestSet | None = None) -> ClientEvaluation:
    """One probe per λ on the client's real train split ∪ the synthetic set (module
    docstring); ``local`` and ``synthetic`` are the λ = 1 and λ = 0 probes."""
    probabilities, probes = [], {"local": local.name, "global": synthetic.name}
    for lam in lambdas:
        if lam == 1.0:
            probabilities.append(local.probabilities)
        elif lam == 0.0:
            probabilities.append(synthetic.probabilities)
        else:
            fitted = mixed_probe(data, synthetic_x, synthetic_y, lam, probe, seed)
            probabilities.append(fitted.probabilities)
            probes[f"mix λ={lam:g}"] = fitted.name
    return scored_candidates(data.client_id, data, probabilities, lambdas, probes, global_test)
