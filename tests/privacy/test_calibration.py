"""Noise calibration (fedsim.privacy.calibration) against Opacus called directly: the
calibrated σ (RDP: Opacus' own search result; PRV: the estimate-then-check search)
spends at most the target, barely, by a fresh Opacus accountant; the release noise
composes with a history to at most the target; the PRV search asks Opacus' ε once or
twice and is safe whatever its estimate says; the cache answers without evaluating the
accountant and survives a corrupted file; Opacus' ε and PRV cdf are reproduced bit for
bit (fedsim.privacy.opacus_epsilon)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV, TruncatedPrivacyRandomVariable
from opacus.accountants.utils import get_noise_multiplier

from fedsim.privacy import calibration
from fedsim.privacy.opacus_epsilon import _TruncatedPRV, prv_epsilon, prv_epsilon_estimate, rdp_epsilon
from privacy_testkit import opacus_epsilon


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path))
    calibration.clear_memory_cache()
    yield tmp_path
    calibration.clear_memory_cache()


def opacus_search(epsilon, delta, q, steps, accountant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=q, steps=steps,
                                    accountant=accountant, epsilon_tolerance=0.005)


def plain_release_search(history, target, delta, accountant, tolerance=1e-3):
    """fedsim's earlier release calibration (bisection on σ, ε by fresh Opacus accountants)."""
    def spent(sigma):
        return opacus_epsilon([*history, (sigma, 1.0, 1)], delta, accountant)

    low, high = 1e-2, 1.0
    while spent(high) > target:
        low, high = high, high * 2.0
    while high - low > tolerance * high:
        middle = 0.5 * (low + high)
        low, high = (middle, high) if spent(middle) > target else (low, middle)
    return high


PLANS = [  # (ε, δ, q, steps)
    (0.9, 1e-4, 1.0, 10),
    (0.9, 1e-4, 256 / 1084, 50),
    (2.0, 1e-5, 0.05, 200),
]
PRV_PLANS = [*PLANS, (0.5, 1e-4, 256 / 2740, 165), (4.0, 1e-5, 0.5, 30), (8.0, 1e-4, 0.01, 1000)]


@pytest.mark.parametrize("epsilon,delta,q,steps", PLANS)
def test_calibrated_rdp_sigma_is_opacus_search_result_and_spends_at_most_the_target(epsilon, delta, q, steps):
    sigma = calibration.calibrate_noise(epsilon, delta, q, steps, "rdp")
    assert sigma == opacus_search(epsilon, delta, q, steps, "rdp")
    spent = opacus_epsilon([(sigma, q, steps)], delta, "rdp")
    assert epsilon - calibration.OPACUS_EPSILON_TOLERANCE <= spent <= epsilon
    assert opacus_epsilon([(0.97 * sigma, q, steps)], delta, "rdp") > epsilon


@pytest.mark.parametrize("epsilon,delta,q,steps", PRV_PLANS)
def test_calibrated_prv_sigma_spends_at_most_and_nearly_the_target_asking_opacus_once_or_twice(epsilon, delta, q,
                                                                                               steps):
    count = calibration.evaluations
    sigma = calibration.calibrate_noise(epsilon, delta, q, steps, "prv")
    assert calibration.evaluations - count <= 2
    spent = opacus_epsilon([(sigma, q, steps)], delta, "prv")  # a fresh PRVAccountant
    assert epsilon - calibration.OPACUS_EPSILON_TOLERANCE <= spent <= epsilon  # Opacus' own search's criterion
    assert opacus_epsilon([(0.99 * sigma, q, steps)], delta, "prv") > epsilon  # not conservative


def test_calibrated_prv_sigma_is_close_to_opacus_search_result():
    epsilon, delta, q, steps = 0.9, 1e-4, 256 / 1084, 50
    sigma = calibration.calibrate_noise(epsilon, delta, q, steps, "prv")
    # both spend within [ε − 0.005, ε]: the same σ to within about 0.005/ε
    assert sigma == pytest.approx(opacus_search(epsilon, delta, q, steps, "prv"), rel=0.01)


def calibrated_history(delta, accountant):
    return [(calibration.calibrate_noise(0.9, delta, 1.0, 10, accountant), 1.0, 10)]


def test_rdp_release_noise_is_the_plain_search_result_and_composes_to_at_most_the_target():
    target, delta = 1.0, 1e-4
    history = calibrated_history(delta, "rdp")
    sigma = calibration.calibrate_release_noise(history, target, delta, "rdp")
    assert sigma == plain_release_search(history, target, delta, "rdp")
    assert opacus_epsilon([*history, (sigma, 1.0, 1)], delta, "rdp") <= target
    # the documented tolerance: 0.1 % less noise overspends
    tighter = sigma * (1 - calibration.RELEASE_TOLERANCE)
    assert opacus_epsilon([*history, (tighter, 1.0, 1)], delta, "rdp") > target


@pytest.mark.parametrize("target,delta,history", [
    (1.0, 1e-4, None),
    (1.0, 1e-4, [(7.39, 256 / 1084, 75)]),
    (1.0, 1e-4, [(2.0, 0.5, 0), (7.39, 256 / 1084, 75)]),  # an entry of no steps counts for nothing
    (6.0, 1e-5, [(1.5, 0.2, 40), (2.3, 0.2, 10)]),
    (0.5, 1e-4, []),
])
def test_prv_release_noise_composes_to_at_most_and_nearly_the_target(target, delta, history):
    history = calibrated_history(delta, "prv") if history is None else history
    count = calibration.evaluations
    sigma = calibration.calibrate_release_noise(history, target, delta, "prv")
    assert calibration.evaluations - count <= 2
    spent = opacus_epsilon([*history, (sigma, 1.0, 1)], delta, "prv")
    assert target * (1 - calibration.PRV_RELEASE_TOLERANCE) <= spent <= target
    assert opacus_epsilon([*history, (0.99 * sigma, 1.0, 1)], delta, "prv") > target


@pytest.mark.parametrize("distortion", [lambda e: 0.5 * e, lambda e: e + 0.3, lambda e: 1.0, lambda e: math.inf])
def test_the_prv_search_is_safe_whatever_its_estimate_says(monkeypatch, distortion):
    """A wrong estimate costs evaluations of Opacus' ε (defect correction, else the plain
    bisection), never the guarantee."""
    monkeypatch.setattr(calibration, "prv_epsilon_estimate", lambda entries, delta: distortion(
        prv_epsilon(entries, delta)))
    epsilon, delta, q, steps = 0.9, 1e-4, 0.3, 30
    sigma = calibration.calibrate_noise(epsilon, delta, q, steps, "prv")
    spent = opacus_epsilon([(sigma, q, steps)], delta, "prv")
    assert epsilon - calibration.OPACUS_EPSILON_TOLERANCE <= spent <= epsilon
    release = calibration.calibrate_release_noise([(sigma, q, steps)], 1.0, delta, "prv")
    assert opacus_epsilon([(sigma, q, steps), (release, 1.0, 1)], delta, "prv") <= 1.0


def test_the_prv_release_reports_a_spent_budget():
    with pytest.raises(ValueError, match="whole budget"):
        calibration.calibrate_release_noise([(0.5, 0.5, 100)], 1.0, 1e-5, "prv")


def test_the_search_gives_the_plain_answer_without_evaluating_far_from_it():
    def spent(sigma):
        return rdp_epsilon([(sigma, 0.25, 40)], 1e-4)

    settled = calibration._MonotoneEpsilon(spent)
    calibration._bracket_root(settled, 0.9, 0.25 * math.sqrt(80 * math.log(1e4)) / 0.9)
    fast = calibration._opacus_bisection(settled, 0.9)
    plain = calibration._MonotoneEpsilon(spent, settle=False)
    assert calibration._opacus_bisection(plain, 0.9) == fast
    assert len(settled.points) <= len(plain.points)
    assert min(settled.points) > 0.9 * fast > min(plain.points)  # small σ: the costly evaluations


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_a_second_call_evaluates_nothing_and_the_file_serves_a_new_process(fresh_cache, accountant):
    def counts():
        return calibration.evaluations, calibration.estimate_evaluations

    first_count = counts()
    sigma = calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, accountant)
    release = calibration.calibrate_release_noise([(sigma, 0.2, 50)], 1.0, 1e-4, accountant)
    assert calibration.evaluations > first_count[0]
    count = counts()
    assert calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, accountant) == sigma
    assert calibration.calibrate_release_noise([(sigma, 0.2, 50)], 1.0, 1e-4, accountant) == release
    calibration.clear_memory_cache()  # as in a new process: only the file is left
    assert calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, accountant) == sigma
    assert calibration.calibrate_release_noise([(sigma, 0.2, 50)], 1.0, 1e-4, accountant) == release
    assert counts() == count
    content = json.loads((fresh_cache / "calibration.json").read_text())
    stored = {json.dumps(r["inputs"], sort_keys=True): r["sigma"] for r in content["records"]}
    assert sorted(r["inputs"]["search"] for r in content["records"]) == ["dp-sgd", "release"]
    assert sigma in stored.values() and release in stored.values()
    # another accountant is another plan
    other = "rdp" if accountant == "prv" else "prv"
    assert calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, other) != sigma


@pytest.mark.parametrize("garbage", ["{not json", '{"format": 1, "records": 3}', '{"format": 99, "records": []}',
                                     None])
def test_a_corrupted_or_foreign_cache_file_is_ignored_and_rewritten(fresh_cache, garbage):
    sigma = calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, "rdp")
    calibration.flush()
    path = fresh_cache / "calibration.json"
    if garbage is None:  # a well-formed file whose record was tampered with
        content = json.loads(path.read_text())
        content["records"][0]["sigma"] = "NaN"
        garbage = json.dumps(content)
    path.write_text(garbage)
    calibration.clear_memory_cache()
    count = calibration.evaluations
    with pytest.warns(UserWarning, match="calibration cache"):
        assert calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, "rdp") == sigma
    assert calibration.evaluations > count  # recomputed, not trusted
    calibration.flush()
    records = json.loads(path.read_text())["records"]
    assert [r["sigma"] for r in records] == [sigma]


def test_edge_cases():
    assert calibration.calibrate_noise(math.inf, 1e-5, 0.1, 10, "rdp") == 0.0
    assert calibration.calibrate_release_noise([(1.0, 0.1, 10)], math.inf, 1e-5, "rdp") == 0.0
    with pytest.raises(ValueError):
        calibration.calibrate_noise(0.0, 1e-5, 0.1, 10, "rdp")
    with pytest.raises(ValueError, match="whole budget"):
        calibration.calibrate_release_noise([(0.5, 0.5, 100)], 1.0, 1e-5, "rdp")
    with pytest.raises(ValueError, match="budget is too low"):
        calibration.calibrate_noise(1e-7, 1e-5, 1.0, 10, "rdp")


HISTORIES = [[(9.1, 0.462, 30)], [(1.0, 0.462, 30)], [(0.7, 0.01, 1000)], [(11.0, 1.0, 10)],
             [(0.9, 0.2, 40), (1.3, 0.2, 10), (3.0, 1.0, 1)], [(0.5, 0.3, 10)], [(40.0, 0.9, 3)]]


@pytest.mark.parametrize("history", HISTORIES)
@pytest.mark.parametrize("delta", [1e-5, 1e-4, 1e-8])
def test_rdp_epsilon_is_opacus_bit_for_bit(history, delta):
    assert rdp_epsilon(history, delta) == opacus_epsilon(history, delta, "rdp")


@pytest.mark.parametrize("history", [HISTORIES[0], HISTORIES[3], [(1.1, 0.05, 30), (6.0, 1.0, 1)],
                                     [(7.39, 256 / 1084, 75), (7.6, 1.0, 1)]])
def test_prv_epsilon_is_opacus_bit_for_bit(history):
    assert prv_epsilon(history, 1e-4) == opacus_epsilon(history, 1e-4, "prv")


@pytest.mark.parametrize("q,sigma", [(0.236, 7.38), (1.0, 13.7), (0.01, 0.7), (0.5, 0.5), (0.9, 40.0)])
def test_truncated_prv_cdf_is_opacus_bit_for_bit_at_points_and_on_arrays(q, sigma):
    prv = PoissonSubsampledGaussianPRV(q, sigma)
    ours, theirs = _TruncatedPRV(prv, -9.5, 9.25), TruncatedPrivacyRandomVariable(prv, -9.5, 9.25)
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-10, 10, 500), rng.normal(0, 0.05, 500), rng.normal(0, 1e-4, 200),
                             [-9.5, 9.25, 0.0, math.log1p(-q) if q < 1 else -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(ours.cdf(points), theirs.cdf(points))
        assert [ours.cdf(float(t)) for t in points] == [float(theirs.cdf(float(t))) for t in points]
        assert ours.mean() == theirs.mean()


@pytest.mark.parametrize("history", [HISTORIES[0], HISTORIES[2], HISTORIES[3], [(7.39, 256 / 1084, 75), (7.6, 1.0, 1)],
                                     [(0.5, 0.9, 3)]])
def test_prv_estimate_is_close_to_opacus(history):
    assert prv_epsilon_estimate(history, 1e-4) == pytest.approx(opacus_epsilon(history, 1e-4, "prv"), abs=1e-3)
