"""DP-SGD gradient construction (Abadi et al. 2016; the paper's Eq. 9, made sound).

For a Poisson batch ``B`` drawn with rate ``q`` from a client's ``n`` records:

    g̃ = ( Σ_{j∈B} clip(∇ℓ_j, C) + N(0, σ² C² I) ) / (q·n)

* ``∇ℓ_j`` is the gradient of record ``j``'s loss with respect to *every* parameter
  that is trained on data, concatenated into one vector (joint clipping);
* ``clip(g, C) = g · min(1, C / ‖g‖₂)``, so each record moves the sum by at most C;
* dividing by the *expected* batch size ``q·n`` (not the realised ``|B|``, which is
  data dependent) keeps the whole expression a post-processing of the Gaussian
  mechanism on the clipped sum.

Per-sample gradients come from ``torch.func``: ``vmap(grad(record_loss))`` over a
functional call, which also works through a hypernetwork whose input (the client
code) has no batch dimension.

These are the pieces; :class:`fedsim.privacy.dp_trainer.DPTrainer` puts them together
(Poisson batch, clipped sum, noise, division, accounting, optimizer step).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor
from torch.func import grad, vmap

from fedsim.privacy.noise import NoiseSource

Params = dict[str, Tensor]
RecordLoss = Callable[..., Tensor]


def per_sample_gradients(
    record_loss: RecordLoss,
    params: Mapping[str, Tensor],
    records: tuple[Tensor, ...],
    shared: tuple[Tensor, ...] = (),
) -> Params:
    """``∇_params record_loss(params, *record_j, *shared)`` for every record ``j``.

    ``records`` are tensors whose first dimension indexes records; ``shared``
    inputs are the same for every record.  Returns one tensor of shape
    ``(num_records, *param.shape)`` per parameter."""
    in_dims = (None,) + (0,) * len(records) + (None,) * len(shared)
    per_record = vmap(grad(record_loss), in_dims=in_dims, randomness="different")
    gradients: Params = per_record(dict(params), *records, *shared)
    return gradients


def per_sample_norms(grads: Mapping[str, Tensor]) -> Tensor:
    """Joint L2 norm of each record's gradient over all parameters, shape ``(B,)``."""
    norms = [torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads.values()]
    joint: Tensor = torch.linalg.vector_norm(torch.stack(norms, dim=0), dim=0)
    return joint


def clip_factors(norms: Tensor, clip_norm: float) -> Tensor:
    """``min(1, C / ‖g_j‖)`` per record (a zero gradient keeps factor 1)."""
    return (clip_norm / norms.clamp_min(1e-12)).clamp(max=1.0)


def clipped_sum(grads: Mapping[str, Tensor], clip_norm: float) -> Params:
    """``Σ_j clip(g_j, C)`` with joint clipping across all parameters."""
    factors = clip_factors(per_sample_norms(grads), clip_norm)
    return {name: torch.einsum("b,b...->...", factors, g) for name, g in grads.items()}


def add_gaussian_noise(tensors: Mapping[str, Tensor], std: float, noise: NoiseSource) -> Params:
    """Add independent ``N(0, std²)`` noise to every coordinate (tensors in their order);
    ``std = 0`` draws nothing."""
    if std == 0.0:
        return dict(tensors)
    return {name: t + noise.gaussian(t.shape, std, dtype=t.dtype, device=t.device) for name, t in tensors.items()}


def noisy_average(clipped: Mapping[str, Tensor], clip_norm: float, noise_multiplier: float,
                  expected_batch_size: float, noise: NoiseSource) -> Params:
    """``(Σ_j clip(∇ℓ_j, C) + N(0, σ²C² I)) / (q·n)``: the Gaussian mechanism on a clipped
    sum, divided by the expected batch size (module docstring)."""
    noisy = add_gaussian_noise(clipped, noise_multiplier * clip_norm, noise)
    return {name: g / expected_batch_size for name, g in noisy.items()}


def mean_gradient(
    record_loss: RecordLoss,
    params: Mapping[str, Tensor],
    records: tuple[Tensor, ...],
    shared: tuple[Tensor, ...] = (),
) -> Params:
    """Non-private gradient of the batch mean loss (used when ε = ∞, and for the
    local state in the ``paper`` privacy mode)."""
    num_records = records[0].shape[0]
    if num_records == 0:
        return {name: torch.zeros_like(p) for name, p in params.items()}
    in_dims = (None,) + (0,) * len(records) + (None,) * len(shared)

    def batch_loss(p: Params) -> Tensor:
        return vmap(record_loss, in_dims=in_dims, randomness="different")(p, *records, *shared).mean()

    gradient: Params = grad(batch_loss)(dict(params))
    return gradient
