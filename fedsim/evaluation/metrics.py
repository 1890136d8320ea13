"""Classification metrics on one client's split.

Balanced accuracy and macro-F1 are computed over the classes *present* in the
evaluated split (a client's test split rarely holds every class under label skew)."""

from __future__ import annotations

import warnings

import numpy as np


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """``acc``, ``bacc`` and ``f1`` of argmax predictions (0 for an empty split)."""
    if len(y_true) == 0:
        return {"acc": float("nan"), "bacc": float("nan"), "f1": float("nan")}
    # imported here, at the first evaluation: scikit-learn (with SciPy and pandas) costs
    # seconds of CPU that a client actor's start-up and the first rounds do not need
    from sklearn.metrics import balanced_accuracy_score, f1_score

    predicted = probabilities.argmax(axis=1)
    present = np.unique(y_true)
    with warnings.catch_warnings():  # predicting a class absent from a skewed split is expected
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        bacc = float(balanced_accuracy_score(y_true, predicted))
    return {
        "acc": float((predicted == y_true).mean()),
        "bacc": bacc,
        "f1": float(f1_score(y_true, predicted, labels=present, average="macro", zero_division=0)),
    }
