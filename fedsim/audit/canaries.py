"""Dirac gradient canaries in a client's DP-SGD, for the one-run audit only.

The auditor picks ``m`` distinct coordinates ``k`` of the parameters a client releases
(its copy of the shared Φ) and flips a fair coin per canary: included or not (the
secret the audit tries to guess).  An included canary is one more record of the
client's data set whose clipped gradient is the Dirac vector ``C·e_k`` (norm exactly
C, the largest a record may contribute): in every step it is Poisson-sampled with the
plan's rate q, like every real record, and then sits in the step's clipped sum

    S = Σ_{j∈B} clip(∇ℓ_j, C) + Σ_{k included, sampled} C·e_k.

Because the Gaussian noise is added to S independently of S, adding the canaries'
``C·e_k / B`` to the trainer's released ``g̃ = (S_data + N(0, σ²C²I)) / B`` (``B = q·m``, the
plan's expected batch) gives exactly ``(S + N) / B``: :class:`AuditedDPTrainer` does that after
:meth:`DPTrainer.gradient <fedsim.privacy.dp_trainer.DPTrainer.gradient>`, so the
trainer itself is unchanged.  At ε = ∞ the trainer releases the plain mean over the
batch, and a sampled canary is one more record of that mean:
``g = (|B|·g_data + Σ C·e_k) / (|B| + c)`` with ``c`` the sampled canaries.

The plan (q = B/m, T, σ and the normaliser B) is built from the public bound
``m = --privacy.max-records`` (:func:`fedsim.privacy.plan.plan_dp_sgd`), before any canary
exists, and the audit requires ``m ≥ n + (number of canaries)`` (the client's records with
every canary included), so the plan is the same whichever canaries are included and no
record is dropped by the bound.  Without DP (ε = ∞) the plan uses the client's n (nothing
is hidden), again before any canary exists.  Scores: the mechanism's output is the
sequence of privatized gradients g̃_t (what the optimizer, Adam or SGD, turns into ΔΦ is
post-processing), and the score of canary k is ``Σ_t g̃_t[k]`` over every step of the
run: an included canary pushes it up by ``C/B`` whenever it is sampled.

Audit only: nothing in ``fedsim`` outside :mod:`fedsim.audit` builds these classes, and
a normal run's trainer is a plain :class:`~fedsim.privacy.dp_trainer.DPTrainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedsim.privacy.clipped_sums import RecordBatch
from fedsim.privacy.dp_sgd import Params
from fedsim.privacy.dp_trainer import DPTrainer


@dataclass(frozen=True)
class CanaryCoordinate:
    """Where canary ``index`` points: entry ``offset`` of the flattened parameter ``name``."""

    index: int
    name: str
    offset: int


class GradientCanaries:
    """``m`` Dirac canaries on distinct coordinates of ``released`` parameters, each
    included with probability ½ (module docstring).  ``scores`` accumulates Σ_t g̃_t[k]."""

    def __init__(self, shapes: dict[str, torch.Size], count: int, rng: np.random.Generator) -> None:
        names = sorted(shapes)
        sizes = np.array([int(np.prod(shapes[name])) for name in names], dtype=np.int64)
        total = int(sizes.sum())
        if not 2 <= count <= total:
            raise ValueError(f"need 2 <= canaries <= {total} (the released coordinates), got {count}")
        flat = np.sort(rng.choice(total, size=count, replace=False))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        which = np.searchsorted(starts, flat, side="right") - 1
        self.coordinates = [CanaryCoordinate(k, names[w], int(flat[k] - starts[w])) for k, w in enumerate(which)]
        self.included = rng.random(count) < 0.5
        self.scores = np.zeros(count)
        self.times_sampled = np.zeros(count, dtype=np.int64)
        self.steps = 0
        # per parameter: which canaries sit on it and at which flat offsets (vectorised reads/writes)
        self._by_name = {name: (np.flatnonzero(which == w), torch.as_tensor(flat[which == w] - starts[w]))
                         for w, name in enumerate(names) if np.any(which == w)}

    @property
    def count(self) -> int:
        return len(self.coordinates)

    def dirac_sum(self, sampled: np.ndarray, like: Params, scale: float) -> Params:
        """``scale · Σ_{k sampled} e_k`` as a name → tensor dict shaped like ``like``."""
        result = {name: torch.zeros_like(value) for name, value in like.items()}
        for name, (canaries, offsets) in self._by_name.items():
            chosen = torch.as_tensor(sampled[canaries])
            result[name].view(-1)[offsets[chosen]] = scale  # distinct coordinates: one canary each
        return result

    def observe(self, gradient: Params) -> None:
        """Add the released gradient's value at every canary coordinate to its score."""
        for name, (canaries, offsets) in self._by_name.items():
            values = gradient[name].detach().reshape(-1)[offsets]
            self.scores[canaries] += values.double().numpy()
        self.steps += 1


class AuditedDPTrainer(DPTrainer):
    """``trainer`` (same parameters, strategy, optimizer, privacy state) with
    ``canaries`` in every step's clipped sum and the released gradients observed
    (module docstring).  Audit only."""

    def __init__(self, trainer: DPTrainer, canaries: GradientCanaries) -> None:
        super().__init__(trainer.parameters, trainer.clipped_sum, trainer.optimizer, trainer.privacy_state,
                         trainer.outside_dp, trainer.num_records)
        missing = {c.name for c in canaries.coordinates} - set(trainer.parameters)
        if missing:
            raise ValueError(f"canaries on parameters outside the DP group: {sorted(missing)}")
        self.canaries = canaries

    def gradient(self, batch: RecordBatch) -> Params:
        state, plan = self.privacy_state, self.privacy_state.sgd_plan()
        gradient = super().gradient(batch)
        indices = state.noise.poisson_batch(self.canaries.count, plan.sample_rate).numpy()
        sampled = np.zeros(self.canaries.count, dtype=bool)
        sampled[indices] = True
        sampled &= self.canaries.included
        self.canaries.times_sampled += sampled
        dp_group = {name: gradient[name] for name in self.parameters}
        if state.private:
            scale = state.privacy.clip_norm / plan.expected_batch_size
            addition = self.canaries.dirac_sum(sampled, dp_group, scale)
            gradient.update({name: dp_group[name] + addition[name] for name in dp_group})
        else:
            count = int(sampled.sum())
            if count:
                size = batch.size
                addition = self.canaries.dirac_sum(sampled, dp_group, state.privacy.clip_norm)
                gradient.update({name: (size * dp_group[name] + addition[name]) / (size + count)
                                 for name in dp_group})
        self.canaries.observe({name: gradient[name] for name in dp_group})
        return gradient


def released_shapes(trainer: DPTrainer, released: set[str]) -> dict[str, torch.Size]:
    """Shapes of the DP group's parameters that the client releases (its copy of Φ)."""
    shapes = {name: p.shape for name, p in trainer.parameters.items() if name in released}
    if not shapes:
        raise ValueError("the client's DP-SGD trains no released parameter")
    return shapes


__all__ = ["AuditedDPTrainer", "CanaryCoordinate", "GradientCanaries", "released_shapes"]
