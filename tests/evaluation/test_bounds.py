"""The bounds rows: local-only, pooled-real and centralised."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedsim.data.federation import ClientData, Federation
from fedsim.evaluation.blend import chosen_results, summarize
from fedsim.evaluation.bounds import BOUNDS, centralised, local_only, pooled_real, pooled_real_draw
from fedsim.evaluation.classifier import LinearProbeConfig
from fedsim.evaluation.downstream import EvaluationConfig
from test_probe import poison_test, skewed_federation

PRESETS = [EvaluationConfig(probe=LinearProbeConfig(preset=p)) for p in ("reference", "tuned")]


def arrangement(rng, side: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 around (2.5·side, −2), class 1 around (−2.5·side, +2), two noise features."""
    y = np.repeat([0, 1], per_class)
    centres = np.array([[2.5 * side, -2.0], [-2.5 * side, 2.0]])[y]
    x = np.hstack([centres, np.zeros((len(y), 2))]) + 0.4 * rng.standard_normal((len(y), 4))
    return x.astype(np.float32), y.astype(np.int64)


def sharing_federation(num_clients: int = 4, seed: int = 0) -> Federation:
    """Sharing must help: every client's *train* records come from one arrangement of the
    two classes (side +1 for even clients, −1 for odd), in which the first feature
    separates them; its validation and test records come from both arrangements, where
    only the second feature does.  A probe on one client's train data learns the first
    feature (≈ 50 % on both arrangements); real records pooled from all clients hold
    both arrangements and teach the second."""
    rng = np.random.default_rng(seed)
    clients = []
    for client in range(num_clients):
        side = 1 if client % 2 == 0 else -1
        x_train, y_train = arrangement(rng, side, 40)
        splits = []
        for _ in ("val", "test"):
            parts = [arrangement(rng, s, 15) for s in (1, -1)]
            splits.append((np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])))
        clients.append(ClientData(client, x_train, y_train, *splits[0], *splits[1], num_classes=2))
    return Federation(tuple(clients), 2, 4, ("a", "b"), "sharing-toy")


def bacc(evaluations, selection: str = "global") -> float:
    return summarize(chosen_results(evaluations, selection))["bacc_mean"]


@pytest.mark.parametrize("evaluation", PRESETS, ids=["reference", "tuned"])
def test_pooled_real_beats_local_only_where_sharing_must_help(evaluation):
    federation = sharing_federation()
    alone = bacc(local_only(federation, evaluation, 0))
    pooled = bacc(pooled_real(federation, evaluation, 0))
    assert alone < 0.75
    assert pooled >= alone + 0.05
    if evaluation.probe.preset == "tuned":  # the 100-step reference probe is far from converged
        assert pooled > 0.95 and bacc(centralised(federation, evaluation, 0)) > 0.95


def test_bounds_give_one_evaluation_per_client_with_their_lambdas():
    federation = skewed_federation()
    expected = {"local-only": (1.0,), "pooled-real": tuple(round(0.1 * i, 1) for i in range(11)),
                "centralised": (0.0,)}
    assert set(BOUNDS) == set(expected)
    for name, bound in BOUNDS.items():
        evaluations = bound(federation, EvaluationConfig(), 0)
        assert [e.client_id for e in evaluations] == [c.client_id for c in federation.clients]
        assert all(e.lambdas == expected[name] for e in evaluations)


def test_pooled_real_draws_real_train_records_with_the_clients_label_counts():
    federation = skewed_federation()
    x = np.concatenate([c.x_train for c in federation.clients])
    y = np.concatenate([c.y_train for c in federation.clients])
    labels = np.sort(federation.clients[0].y_train)
    drawn = pooled_real_draw(federation, labels, np.random.default_rng(0))
    matches = (drawn[:, None, :] == x[None]).all(axis=2)          # (drawn, pool)
    assert matches.any(axis=1).all()                               # every record is a real train record
    assert all(np.any(matches[i] & (y == label)) for i, label in enumerate(labels))  # of its own label
    for label in np.unique(labels):                                # without replacement where possible
        rows = drawn[labels == label]
        if np.sum(labels == label) <= np.sum(y == label):
            assert len(np.unique(rows, axis=0)) == len(rows)
    plenty = np.zeros(3 * int(np.sum(y == 0)), dtype=np.int64)     # more than the pool: with replacement
    assert pooled_real_draw(federation, plenty, np.random.default_rng(0)).shape == (len(plenty), x.shape[1])


def test_centralised_on_identical_clients_matches_one_clients_probe():
    """K identical clients: the union repeats one client's data K times, so the probe on
    the union at C / K minimises the same objective as the client's probe at C."""
    one = skewed_federation().clients[0]
    k = 3
    federation = Federation(tuple(dataclasses.replace(one, client_id=i) for i in range(k)), one.num_classes,
                            one.dim, tuple("abcd"), "identical")
    probe = LinearProbeConfig(inverse_l2=(0.05,), include_reference=False, tolerance=1e-10)
    alone = local_only(federation, EvaluationConfig(probe=probe), 0)
    union = centralised(federation, EvaluationConfig(probe=dataclasses.replace(probe, inverse_l2=(0.05 / k,))), 0)
    for a, u in zip(alone, union):
        np.testing.assert_array_equal(a.val_acc, u.val_acc)
        for metric in a.test:
            np.testing.assert_array_equal(a.test[metric], u.test[metric])


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bounds_choose_on_validation_only(name):
    federation = skewed_federation()
    clean = BOUNDS[name](federation, EvaluationConfig(), 0)
    dirty = BOUNDS[name](poison_test(federation), EvaluationConfig(), 0)
    assert [e.probes for e in clean] == [e.probes for e in dirty]
    for a, b in zip(clean, dirty):
        np.testing.assert_array_equal(a.val_acc, b.val_acc)
    rule = "per-client"
    assert [r["lambda"] for r in chosen_results(clean, rule)] == [r["lambda"] for r in chosen_results(dirty, rule)]
    assert not all(np.array_equal(a.test["acc"], b.test["acc"]) for a, b in zip(clean, dirty))
