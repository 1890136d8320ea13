"""``python -m fedsim.audit --target statistics``: canary records in the Gaussian release of
class statistics.  Checked against independent computations: the canaries' scores without
noise against a per-canary loop over the clipped records, the claimed ε against a fresh
Opacus accountant, the score noise against its empirical standard deviation; at ε = ∞ the
audit finds ε_lb > 2 and at ε = 1 ε_lb ≤ 1."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from fedsim.audit.__main__ import main
from fedsim.audit.statistics import StatisticsCanaries
from fedsim.privacy.noise import SeededNoise
from fedsim.privacy.statistics import class_statistics, release_class_statistics

SMALL = ["--target", "statistics", "--data.synthetic.n-samples", "2000", "--data.synthetic.dim", "32",
         "--canaries", "300", "--privacy.reproducible-noise"]


def _audit(tmp_path: Path, *args: str) -> dict:
    assert main([*args, "--out", str(tmp_path)]) == 0
    return json.loads((tmp_path / "audit.json").read_text())


def _opacus_epsilon(sigma: float, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = [(sigma, 1.0, 1)]
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_noiseless_scores_are_each_canarys_clipped_contribution(covariance):
    """Without noise, score_k is 2 for an included canary and 0 otherwise; the released
    statistics minus the records' own are exactly the loop over the included canary records."""
    rng = np.random.default_rng(0)
    classes, dim, clip = 3, 5, 2.0
    x = torch.as_tensor(3 * rng.standard_normal((40, dim)), dtype=torch.float32)
    y = torch.as_tensor(np.arange(40) % classes)
    canaries = StatisticsCanaries.draw(classes, dim, 12, clip, rng)
    assert len({(a, b) for a, b in zip(canaries.classes, canaries.coordinates)}) == 12
    canary_x, canary_y = canaries.records(dim)
    released = release_class_statistics(torch.cat([x, canary_x]), torch.cat([y, canary_y]), classes, clip, 0.0,
                                         covariance, SeededNoise(torch.Generator().manual_seed(0)))
    own = class_statistics(x, y, classes, clip, covariance)
    expected_sums = torch.zeros(classes, dim, dtype=torch.float64)
    for record, label in zip(canary_x, canary_y):       # each canary record, clipped by hand
        scale = min(1.0, clip / float(record.norm()))
        expected_sums[label] += record.double() * scale
    torch.testing.assert_close(released.sums - own.sums, expected_sums, rtol=0, atol=1e-9)
    np.testing.assert_allclose(canaries.scores(released, own), 2.0 * canaries.included, atol=1e-6)


# FedHypeVAE's DP-SGD-then-release variant (the release after DP-SGD, clipped also at ε = ∞)
DP_SGD_VARIANT = ["--fedhypevae.training", "dp-sgd"]


def test_without_dp_the_statistics_audit_finds_epsilon_above_2(tmp_path):
    report = _audit(tmp_path, *SMALL, *DP_SGD_VARIANT, "--privacy.epsilon", "inf")
    assert report["target"] == "statistics" and report["claimed_epsilon"] == "inf"
    assert report["epsilon_lower_bound"] > 2 and report["auc"] == 1.0
    assert report["epsilon_lower_bound"] == pytest.approx(report["epsilon_ceiling"])
    assert report["plan"]["noise_multiplier"] == 0.0 and report["plan"]["canary_norm"] == pytest.approx(math.sqrt(32))


@pytest.mark.parametrize("algorithm, variant", [
    ("fedhypevae", DP_SGD_VARIANT),
    ("fedhypevae", []),              # the default: statistics first, the whole budget on the release
    ("dp-stats", []),
], ids=["fedhypevae-dp-sgd", "fedhypevae-stats-first", "dp-stats"])
def test_at_epsilon_1_the_statistics_audit_finds_at_most_1(tmp_path, algorithm, variant):
    report = _audit(tmp_path, *SMALL, *variant, "--algorithm", algorithm, "--privacy.epsilon", "1")
    assert report["epsilon_lower_bound"] <= 1
    sigma = report["plan"]["noise_multiplier"]
    # the claimed ε is the release's own: one Gaussian mechanism (σ_s, q = 1), by a fresh accountant
    assert report["claimed_epsilon"] == pytest.approx(_opacus_epsilon(sigma, 1e-4), rel=1e-9)
    if not variant:               # the whole budget
        assert report["claimed_epsilon"] == pytest.approx(1.0, rel=0.01)
        assert report["plan"]["dp_sgd_steps_charged_before"] == 0
    else:                         # what DP-SGD's 10 planned-and-run rounds left (composed total ≈ 1)
        assert report["claimed_epsilon"] < 1
        assert report["plan"]["dp_sgd_steps_charged_before"] > 0
        assert report["plan"]["client_epsilon_total"] == pytest.approx(1.0, rel=0.01)
    scores, included = np.array(report["scores"]), np.array(report["included"], dtype=bool)
    # an excluded canary's score is pure noise: N(0, σ_s²·3) on ΔS/R and on ΔM/R²
    assert np.std(scores[~included]) == pytest.approx(math.sqrt(6) * sigma, rel=0.2)
    assert abs(np.mean(scores[~included])) < 4 * math.sqrt(6) * sigma / math.sqrt((~included).sum())


@pytest.mark.parametrize("args, message", [(["--algorithm", "fedavg"], "--target statistics"),
                                           (["--canaries", "353"], "--canaries must be at most 352"),
                                           (["--algorithm", "dp-stats", "--privacy.noise-placement", "aggregate"],
                                            "aggregate carries only its noise share")])
def test_bad_statistics_audits_exit_2(tmp_path, capsys, args, message):
    assert main([*SMALL, *args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "audit.json").exists()
