"""Dirac gradient canaries: placement, and the audited gradient against the plain
trainer's plus an independently replayed canary sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedsim.audit.canaries import AuditedDPTrainer, GradientCanaries
from fedsim.privacy.clipped_sums import GhostClippedSum, RecordBatch
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_trainer import DPTrainer
from fedsim.privacy.noise import SeededNoise
from fedsim.privacy.plan import DPSGDPlan
from fedsim.privacy.state import PrivacyState

RECORDS, RATE, CLIP, SIGMA = 40, 0.25, 0.5, 0.8


def _trainer(private: bool, seed: int = 3) -> tuple[nn.Linear, DPTrainer]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Linear(6, 4)
    losses = GhostClippedSum(model, lambda xb, yb: nn.functional.cross_entropy(model(xb), yb, reduction="none"))
    plan = DPSGDPlan(num_records=RECORDS, sample_rate=RATE, expected_batch_size=RATE * RECORDS,
                     steps_per_epoch=1, total_steps=1, noise_multiplier=SIGMA if private else 0.0,
                     target_epsilon=1.0)
    privacy = PrivacyConfig(epsilon=1.0 if private else float("inf"), clip_norm=CLIP)
    state = PrivacyState.fresh(privacy, plan, 1, SeededNoise(torch.Generator().manual_seed(seed)))
    parameters = dict(model.named_parameters())
    return model, DPTrainer(parameters, losses, torch.optim.SGD(parameters.values(), lr=0.1), state)


def _batch(seed: int = 5, size: int = 9) -> RecordBatch:
    g = torch.Generator().manual_seed(seed)
    return RecordBatch((torch.randn(size, 6, generator=g), torch.arange(size) % 4))


def _canaries(trainer: DPTrainer, count: int = 20) -> GradientCanaries:
    shapes = {name: p.shape for name, p in trainer.parameters.items()}
    return GradientCanaries(shapes, count, np.random.default_rng(0))


def test_canaries_sit_on_distinct_coordinates_and_about_half_are_included():
    shapes = {"a": torch.Size([10, 30]), "b": torch.Size([30])}
    canaries = GradientCanaries(shapes, 300, np.random.default_rng(1))
    places = {(c.name, c.offset) for c in canaries.coordinates}
    assert len(places) == 300
    assert all(0 <= c.offset < (300 if c.name == "a" else 30) for c in canaries.coordinates)
    assert 110 < canaries.included.sum() < 190
    with pytest.raises(ValueError):
        GradientCanaries(shapes, 331, np.random.default_rng(1))


@pytest.mark.parametrize("private", [True, False])
def test_audited_gradient_is_the_plain_one_plus_the_sampled_included_canaries(private):
    _, plain = _trainer(private)
    _, audited_inner = _trainer(private)
    canaries = _canaries(audited_inner)
    audited = AuditedDPTrainer(audited_inner, canaries)
    batch = _batch()
    expected = plain.gradient(batch)
    # replay the canaries' Poisson draw: the audited trainer makes it right after the plain gradient's draws
    sampled = (torch.rand(canaries.count, generator=plain.privacy_state.noise.generator) < RATE).numpy()
    sampled &= canaries.included
    assert sampled.any()
    got = audited.gradient(batch)
    for name in expected:
        reference = expected[name].clone().reshape(-1)
        for k in np.flatnonzero(sampled):
            coordinate = canaries.coordinates[k]
            if coordinate.name != name:
                continue
            if private:   # C·e_k inside the clipped sum, divided by the expected batch q·n
                reference[coordinate.offset] += CLIP / (RATE * RECORDS)
        if not private:   # one more record, of gradient C·e_k, in the plain mean
            extra = torch.zeros_like(reference)
            for k in np.flatnonzero(sampled):
                if canaries.coordinates[k].name == name:
                    extra[canaries.coordinates[k].offset] += CLIP
            reference = (batch.size * reference + extra) / (batch.size + int(sampled.sum()))
        torch.testing.assert_close(got[name].reshape(-1), reference, rtol=1e-6, atol=1e-7)
    # the score is the released gradient at the canary's coordinate
    observed = np.array([float(got[c.name].reshape(-1)[c.offset]) for c in canaries.coordinates])
    np.testing.assert_allclose(canaries.scores, observed)
    assert canaries.times_sampled.tolist() == sampled.astype(int).tolist()


def test_the_audited_trainer_accounts_like_the_plain_one():
    _, plain = _trainer(True)
    _, inner = _trainer(True)
    audited = AuditedDPTrainer(inner, _canaries(inner))
    for _ in range(3):
        plain.gradient(_batch())
        audited.gradient(_batch())
    assert audited.privacy_state.epsilon() == plain.privacy_state.epsilon()


def test_no_module_outside_the_audit_package_imports_it():
    from pathlib import Path

    import fedsim

    root = Path(fedsim.__file__).parent
    importers = [path for path in root.rglob("*.py")
                 if "audit" not in path.relative_to(root).parts and "fedsim.audit" in path.read_text()]
    assert importers == []
