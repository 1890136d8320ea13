"""How a DP-SGD step gets ``Σ_{j∈B} clip(∇ℓ_j, C)``: the pluggable part of
:class:`~fedsim.privacy.dp_trainer.DPTrainer`.

A strategy computes, for a parameter group θ and a Poisson batch ``B`` (a
:class:`RecordBatch`),

    clipped_sum(θ, B, C) = Σ_{j∈B} ∇_θ ℓ_j · min(1, C / ‖∇_θ ℓ_j‖₂)     (joint clipping over θ)
    mean_gradient(θ, B)  = (1/|B|) Σ_{j∈B} ∇_θ ℓ_j                     (ε = ∞, and outside DP)

where ``ℓ_j`` depends on record ``j`` alone (and on record-free inputs shared by the
batch).  The trainer never calls a strategy on an empty batch.  Two strategies:

* :class:`VmapClippedSum`: per-record gradients ``vmap(grad(ℓ))`` over a functional call
  (:mod:`fedsim.privacy.dp_sgd`), materialised as a ``(|B|, #θ)`` tensor.  General: works
  through FedHypeVAE's hypernetwork, whose input (the client code) has no batch dimension;
* :class:`GhostClippedSum`: per-record norms from linear layers' inputs and output
  gradients (several rows per record and row-scaled layers included) and from per-record
  copies of the other parameters, then one backward of ``Σ_j c_j ℓ_j``
  (:mod:`fedsim.privacy.ghost_clipping`), without per-record gradients.  Used by the
  baselines' MLPs and linear models and by FedHypeVAE's whole-model DP-SGD step, whose
  unclipped mean gradient (ε = ∞, ``paper`` mode's local group) stays a
  :class:`VmapClippedSum`'s (``mean_from``).

A further strategy implements the same two methods of :class:`ClippedSum`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import torch
from torch import Tensor, nn

from fedsim.privacy.dp_sgd import Params, RecordLoss, clipped_sum, mean_gradient, per_sample_gradients
from fedsim.privacy.ghost_clipping import BatchLosses, linear_clipped_sum, split_batch_losses


@dataclass(frozen=True)
class RecordBatch:
    """The inputs of one step's per-record losses.

    ``records``: tensors whose first dimension indexes the batch's records (features,
    labels, per-record data-independent noise); ``shared``: inputs the same for every
    record and independent of the data (e.g. the MMD's synthetic-sample noise)."""

    records: tuple[Tensor, ...]
    shared: tuple[Tensor, ...] = ()

    @property
    def size(self) -> int:
        """|B|, the realised batch size (data dependent; only the trainer's emptiness test reads it)."""
        return int(self.records[0].shape[0])


class ClippedSum(Protocol):
    """The gradient rule of a parameter group (module docstring)."""

    def clipped_sum(self, parameters: Mapping[str, nn.Parameter], batch: RecordBatch,
                    clip_norm: float) -> Params:
        """``Σ_{j∈B} clip(∇ℓ_j, C)``, jointly clipped over ``parameters``."""
        ...

    def mean_gradient(self, parameters: Mapping[str, nn.Parameter], batch: RecordBatch) -> Params:
        """``(1/|B|) Σ_{j∈B} ∇ℓ_j`` over ``parameters``, unclipped."""
        ...


class VmapClippedSum:
    """Per-record gradients by ``torch.func`` (module docstring).

    ``record_loss(params, *record_j, *shared)`` is ℓ_j as a function of a name → tensor
    dict of the group's parameters (typically a ``functional_call`` of the model; other
    parameters enter as constants)."""

    def __init__(self, record_loss: RecordLoss) -> None:
        self.record_loss = record_loss

    def clipped_sum(self, parameters: Mapping[str, nn.Parameter], batch: RecordBatch,
                    clip_norm: float) -> Params:
        grads = per_sample_gradients(self.record_loss, _detached(parameters), batch.records, batch.shared)
        return clipped_sum(grads, clip_norm)

    def mean_gradient(self, parameters: Mapping[str, nn.Parameter], batch: RecordBatch) -> Params:
        return mean_gradient(self.record_loss, _detached(parameters), batch.records, batch.shared)


class GhostClippedSum:
    """Ghost clipping (module docstring; preconditions in :mod:`fedsim.privacy.ghost_clipping`).

    ``batch_losses(*records, *shared)`` returns the per-record losses ``(ℓ_j)_{j∈B}``,
    shape ``(|B|,)``, computed by ``model``'s layers — or ``(losses, copies)`` with the
    per-record copies of parameters outside linear layers; default: ``model`` itself.
    ``mean_from``: the strategy whose :meth:`mean_gradient` is used instead of the
    batch losses' mean (so that an unclipped step computes what it computed before).
    ``bookkeeping``: the clipped sum from the captured rows, without a second backward
    pass (:func:`~fedsim.privacy.ghost_clipping.linear_clipped_sum`)."""

    def __init__(self, model: nn.Module, batch_losses: Callable[..., BatchLosses] | None = None,
                 mean_from: ClippedSum | None = None, bookkeeping: bool = False) -> None:
        self.model = model
        self.batch_losses = model if batch_losses is None else batch_losses
        self.mean_from = mean_from
        self.bookkeeping = bookkeeping

    def _losses(self, batch: RecordBatch) -> Callable[[], BatchLosses]:
        return lambda: self.batch_losses(*batch.records, *batch.shared)

    def clipped_sum(self, parameters: Mapping[str, nn.Parameter], batch: RecordBatch,
                    clip_norm: float) -> Params:
        return linear_clipped_sum(self.model, parameters, self._losses(batch), clip_norm, self.bookkeeping)

    def mean_gradient(self, parameters: Mapping[str, nn.Parameter], batch: RecordBatch) -> Params:
        if self.mean_from is not None:
            return self.mean_from.mean_gradient(parameters, batch)
        losses, _ = split_batch_losses(self._losses(batch)())
        names = list(parameters)
        grads = torch.autograd.grad(losses.mean(), [parameters[n] for n in names], allow_unused=True)
        return {n: torch.zeros_like(parameters[n]) if g is None else g for n, g in zip(names, grads)}


def _detached(parameters: Mapping[str, nn.Parameter]) -> Params:
    return {name: p.detach() for name, p in parameters.items()}
