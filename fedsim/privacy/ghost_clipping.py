"""Jointly clipped per-record gradient sums of MLPs without per-record gradients
("ghost clipping": Goodfellow 2015; Lee & Kifer 2021; Li et al. 2022).

For a linear layer ``y = W a + b`` applied to a batch whose row ``j`` belongs to record
``j`` alone, record ``j``'s gradient is

    ∂ℓ_j/∂W = g_j a_jᵀ,   ∂ℓ_j/∂b = g_j,    g_j = ∂ℓ_j/∂y_j,

so ``‖∂ℓ_j/∂W‖²_F = ‖g_j‖² ‖a_j‖²`` and ``‖∂ℓ_j/∂b‖² = ‖g_j‖²``.  The joint squared norm
of record ``j``'s gradient over every trained parameter is the sum of these over the
layers, and with ``c_j = min(1, C / ‖∇ℓ_j‖)`` held constant

    Σ_j clip(∇ℓ_j, C) = Σ_j c_j ∇ℓ_j = ∇ (Σ_j c_j ℓ_j),

one ordinary backward pass.  Cost: two backward passes of the batch, instead of
materialising a ``(B, #params)`` tensor (:func:`fedsim.privacy.dp_sgd.per_sample_gradients`,
which the general case — FedHypeVAE's hypernetwork — still uses).

Preconditions, checked by :func:`linear_clipped_sum` (a violation is a programming
error, raised as ``ValueError``): every trained parameter is the weight or bias of an
``nn.Linear`` that is called exactly once per forward pass, on a 2-D ``(B, features)``
input; the model has no batch-coupling layer (batch norm); ``batch_losses()`` returns
one loss per record, shape ``(B,)``, each computed from its record's row alone (as an
MLP's forward does).  Tests compare against a per-record loop
(``tests/privacy/test_ghost_clipping.py``).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from fedsim.privacy.dp_sgd import clip_factors


def _trained_linears(model: nn.Module, parameters: Mapping[str, nn.Parameter]) -> list[tuple[nn.Linear, bool, bool]]:
    """``(layer, weight trained, bias trained)`` for every linear layer holding a trained
    parameter; ValueError when a trained parameter lives elsewhere."""
    trained = {id(p) for p in parameters.values()}
    layers: list[tuple[nn.Linear, bool, bool]] = []
    covered: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ValueError("ghost clipping needs records to be independent; the model has batch norm")
        if isinstance(module, nn.Linear):
            weight = id(module.weight) in trained
            bias = module.bias is not None and id(module.bias) in trained
            if weight or bias:
                layers.append((module, weight, bias))
                covered.update(id(p) for p, used in ((module.weight, weight), (module.bias, bias)) if used)
    missing = [name for name, p in parameters.items() if id(p) not in covered]
    if missing:
        raise ValueError(f"ghost clipping supports nn.Linear parameters only; not linear: {missing}")
    return layers


def linear_clipped_sum(model: nn.Module, parameters: Mapping[str, nn.Parameter],
                       batch_losses: Callable[[], Tensor], clip_norm: float) -> dict[str, Tensor]:
    """``Σ_j clip(∇ℓ_j, C)`` over ``parameters`` (jointly clipped), for the per-record
    losses ``batch_losses()`` of ``model`` (module docstring)."""
    layers = _trained_linears(model, parameters)
    captured: dict[nn.Linear, list[tuple[Tensor, Tensor]]] = {layer: [] for layer, _, _ in layers}

    def capture(layer: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        captured[layer].append((inputs[0].detach(), output))

    handles = [layer.register_forward_hook(capture) for layer, _, _ in layers]
    try:
        losses = batch_losses()
    finally:
        for handle in handles:
            handle.remove()
    if losses.dim() != 1:
        raise ValueError(f"batch_losses must return one loss per record, got shape {tuple(losses.shape)}")
    for layer, calls in captured.items():
        if len(calls) != 1 or calls[0][0].dim() != 2:
            raise ValueError("ghost clipping needs every trained linear layer called once on a (B, features) "
                             f"input; got {len(calls)} call(s) of {layer}")
    outputs = [captured[layer][0][1] for layer, _, _ in layers]
    output_grads = torch.autograd.grad(losses.sum(), outputs, retain_graph=True)
    squared = torch.zeros_like(losses)
    for (layer, weight, bias), g in zip(layers, output_grads):
        g_sq = g.pow(2).sum(dim=1)
        if weight:
            squared = squared + g_sq * captured[layer][0][0].pow(2).sum(dim=1)
        if bias:
            squared = squared + g_sq
    factors = clip_factors(squared.sqrt(), clip_norm).detach()
    names = list(parameters)
    sums = torch.autograd.grad((losses * factors).sum(), [parameters[n] for n in names], allow_unused=True)
    return {name: (torch.zeros_like(parameters[name]) if s is None else s) for name, s in zip(names, sums)}
