"""Noise calibration (fedsim.privacy.calibration) against Opacus called directly: the
calibrated σ is Opacus' own search result, spends at most the target, barely; the
release noise composes with a history to at most the target; the cache answers without
evaluating the accountant and survives a corrupted file; Opacus' ε is reproduced bit
for bit (fedsim.privacy.opacus_epsilon)."""

from __future__ import annotations

import json
import math
import warnings

import pytest
from opacus.accountants.utils import get_noise_multiplier

from fedsim.privacy import calibration
from fedsim.privacy.opacus_epsilon import prv_epsilon, rdp_epsilon
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


PLANS = [  # (ε, δ, q, steps, accountant)
    (0.9, 1e-4, 1.0, 10, "rdp"),
    (0.9, 1e-4, 256 / 1084, 50, "rdp"),
    (2.0, 1e-5, 0.05, 200, "rdp"),
    (0.9, 1e-4, 1.0, 10, "prv"),
]


@pytest.mark.parametrize("epsilon,delta,q,steps,accountant", PLANS)
def test_calibrated_sigma_is_opacus_search_result_and_spends_at_most_the_target(epsilon, delta, q, steps,
                                                                                accountant):
    sigma = calibration.calibrate_noise(epsilon, delta, q, steps, accountant)
    assert sigma == opacus_search(epsilon, delta, q, steps, accountant)
    spent = opacus_epsilon([(sigma, q, steps)], delta, accountant)
    assert epsilon - calibration.OPACUS_EPSILON_TOLERANCE <= spent <= epsilon
    assert opacus_epsilon([(0.97 * sigma, q, steps)], delta, accountant) > epsilon


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_release_noise_composes_to_at_most_the_target(accountant):
    target, delta = 1.0, 1e-4
    history = [(calibration.calibrate_noise(0.9, delta, 1.0, 10, accountant), 1.0, 10)]
    sigma = calibration.calibrate_release_noise(history, target, delta, accountant)
    assert sigma == plain_release_search(history, target, delta, accountant)
    assert opacus_epsilon([*history, (sigma, 1.0, 1)], delta, accountant) <= target
    # the documented tolerance: 0.1 % less noise overspends
    tighter = sigma * (1 - calibration.RELEASE_TOLERANCE)
    assert opacus_epsilon([*history, (tighter, 1.0, 1)], delta, accountant) > target


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


def test_a_second_call_evaluates_nothing_and_the_file_serves_a_new_process(fresh_cache):
    first_count = calibration.evaluations
    sigma = calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, "rdp")
    release = calibration.calibrate_release_noise([(sigma, 0.2, 50)], 1.0, 1e-4, "rdp")
    assert calibration.evaluations > first_count
    count = calibration.evaluations
    assert calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, "rdp") == sigma
    assert calibration.calibrate_release_noise([(sigma, 0.2, 50)], 1.0, 1e-4, "rdp") == release
    calibration.clear_memory_cache()  # as in a new process: only the file is left
    assert calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, "rdp") == sigma
    assert calibration.calibrate_release_noise([(sigma, 0.2, 50)], 1.0, 1e-4, "rdp") == release
    assert calibration.evaluations == count
    content = json.loads((fresh_cache / "calibration.json").read_text())
    stored = {json.dumps(r["inputs"], sort_keys=True): r["sigma"] for r in content["records"]}
    assert sorted(r["inputs"]["search"] for r in content["records"]) == ["dp-sgd", "release"]
    assert sigma in stored.values() and release in stored.values()
    # another accountant is another plan
    assert calibration.calibrate_noise(0.9, 1e-4, 0.2, 50, "prv") != sigma


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


@pytest.mark.parametrize("history", [HISTORIES[0], HISTORIES[3], [(1.1, 0.05, 30), (6.0, 1.0, 1)]])
def test_prv_epsilon_is_opacus_bit_for_bit(history):
    assert prv_epsilon(history, 1e-4) == opacus_epsilon(history, 1e-4, "prv")
