"""Jointly clipped per-record gradient sums without per-record gradients ("ghost
clipping": Goodfellow 2015; Lee & Kifer 2021; Li et al. 2022), for models built of
linear layers.

**One call per record.**  For a linear layer ``y = W a + b`` applied to a batch whose row
``j`` belongs to record ``j`` alone, record ``j``'s gradient is

    ∂ℓ_j/∂W = g_j a_jᵀ,   ∂ℓ_j/∂b = g_j,    g_j = ∂ℓ_j/∂y_j,

so ``‖∂ℓ_j/∂W‖²_F = ‖g_j‖² ‖a_j‖²`` and ``‖∂ℓ_j/∂b‖² = ‖g_j‖²``.

**Several rows per record.**  When record ``j`` owns ``T`` rows ``t`` of the layer's
inputs — a layer called more than once (FedHypeVAE's decoder decodes the record and its
MMD samples), or on inputs of shape ``(B, T, features)`` — its gradient is the sum over
its rows, ``∂ℓ_j/∂W = Σ_t g_{jt} a_{jt}ᵀ`` with ``g_{jt}`` the total derivative of ℓ_j
with respect to that row's output (so a layer reused in sequence is covered too), and

    ‖∂ℓ_j/∂W‖²_F = Σ_{t,t'} (a_{jt}·a_{jt'}) (g_{jt}·g_{jt'}),   ‖∂ℓ_j/∂b‖² = ‖Σ_t g_{jt}‖²

(Li et al. 2022's ghost norm of a sequence: two T × T Gram matrices instead of a
``(out, in)`` gradient per record).

**Row-scaled layers** (``row_scaled = True``: forward ``(a, s, Δb) ↦ s ⊙ (W a) + b + Δb``,
``s`` the second argument or ``scale=``,
FedHypeVAE's modulated decoder, Eq. 3): the weight's output gradient is ``s ⊙ g``, the
bias's ``g``.

**Per-record copies.**  A parameter that every record uses whole (FedHypeVAE's client
code v_i) enters the losses through a per-record copy ``v.expand(B, …)``; record ``j``'s
gradient of it is row ``j`` of the copy's gradient.  ``batch_losses`` then returns
``(losses, {name: copy})`` (copies of parameters that are not trained are ignored).

The joint squared norm of record ``j``'s gradient is the sum of these terms over the
trained parameters, and with ``c_j = min(1, C / ‖∇ℓ_j‖)`` held constant

    Σ_j clip(∇ℓ_j, C) = Σ_j c_j ∇ℓ_j = ∇ (Σ_j c_j ℓ_j),

one ordinary backward pass.  Cost: two backward passes of the batch, instead of
materialising a ``(B, #params)`` tensor (:func:`fedsim.privacy.dp_sgd.per_sample_gradients`).

Preconditions (a violation is a programming error, raised as ``ValueError``): every
trained parameter is the weight or bias of one ``nn.Linear`` (no tied weights), or has a
per-record copy; it reaches the losses only through its layer's calls (one use per call)
or its copy — counted on the losses' autograd graph, so a weight also used directly, or a
copied parameter also used whole, is refused; every call's input has the batch's records
along its first dimension; the model has no batch-coupling layer (batch norm);
``batch_losses()`` returns one loss per record, shape ``(B,)``.  Not checkable, and the
caller's to keep: each loss is computed from its record's rows alone (and from inputs
shared by the batch that carry no gradient), and no trained layer is called on an input
shared by the whole batch whose first dimension happens to equal B (its rows would be
credited to single records).  Tests compare against a per-record loop
(``tests/privacy/test_ghost_clipping.py``, ``tests/algorithms/fedhypevae/test_ghost_dp_step.py``).
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Mapping, Union

import torch
from torch import Tensor, nn

from fedsim.privacy.dp_sgd import clip_factors

BatchLosses = Union[Tensor, tuple[Tensor, Mapping[str, Tensor]]]
"""What ``batch_losses()`` returns: the per-record losses, and the per-record copies."""


def _trained_linears(model: nn.Module, parameters: Mapping[str, nn.Parameter]) -> list[tuple[nn.Linear, bool, bool]]:
    """``(layer, weight trained, bias trained)`` for every linear layer holding a trained
    parameter; ValueError for batch norm."""
    trained = {id(p) for p in parameters.values()}
    layers: list[tuple[nn.Linear, bool, bool]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ValueError("ghost clipping needs records to be independent; the model has batch norm")
        if isinstance(module, nn.Linear):
            weight = id(module.weight) in trained
            bias = module.bias is not None and id(module.bias) in trained
            if weight or bias:
                layers.append((module, weight, bias))
    return layers


def _check_coverage(parameters: Mapping[str, nn.Parameter], layers: list[tuple[nn.Linear, bool, bool]],
                    copies: Mapping[str, Tensor]) -> None:
    """ValueError unless every trained parameter is one linear layer's or has a per-record copy."""
    owned = [id(p) for layer, weight, bias in layers for p, used in ((layer.weight, weight), (layer.bias, bias)) if used]
    if len(owned) != len(set(owned)):
        raise ValueError("ghost clipping needs every trained parameter in one linear layer; the model ties weights")
    in_layers = set(owned)
    unknown = [name for name in copies if name in parameters and id(parameters[name]) in in_layers]
    if unknown:
        raise ValueError(f"per-record copies must be of parameters outside linear layers; got {unknown}")
    missing = [name for name, p in parameters.items() if id(p) not in in_layers and name not in copies]
    if missing:
        raise ValueError("ghost clipping supports nn.Linear parameters and per-record copies only; "
                         f"neither: {missing}")


class _Call:
    """One call of a linear layer: its input, output and (row-scaled layers) row scales,
    passed as the second argument or as ``scale=`` (none: 1)."""

    def __init__(self, args: tuple[Tensor, ...], kwargs: Mapping[str, Tensor | None], output: Tensor,
                 row_scaled: bool) -> None:
        self.input = args[0].detach()
        scale = (args[1] if len(args) > 1 else kwargs.get("scale")) if row_scaled else None
        self.scale = None if scale is None else scale.detach()
        self.output = output


def _rows(tensors: list[Tensor], batch: int) -> Tensor:
    """``(B, …, f)`` tensors → ``(B, T, f)``: each record's rows of all of them along the
    middle dimension (one tensor: a view)."""
    if len(tensors) == 1:
        return tensors[0].reshape(batch, -1, tensors[0].shape[-1])
    return torch.cat([t.reshape(batch, -1, t.shape[-1]) for t in tensors], dim=1)


class _LayerRows:
    """One layer's captured rows, per record: inputs ``a`` (B, T, in), the weight's output
    gradients (``s ⊙ g`` for a row-scaled layer) and the bias's ``g`` (B, T, out), each
    built once and shared by the norms and the book-kept sums."""

    def __init__(self, calls: list[_Call], grads: list[Tensor], batch: int) -> None:
        self.calls, self.grads, self.batch = calls, grads, batch

    @cached_property
    def inputs(self) -> Tensor:
        return _rows([call.input for call in self.calls], self.batch)

    @cached_property
    def weight_grads(self) -> Tensor:
        return _rows([g if call.scale is None else g * call.scale for call, g in zip(self.calls, self.grads)],
                     self.batch)

    @cached_property
    def bias_grads(self) -> Tensor:
        return _rows(self.grads, self.batch)


def _add_layer_norms(squared: Tensor, rows: _LayerRows, weight: bool, bias: bool) -> Tensor:
    """``squared + ‖∂ℓ_j/∂W‖² + ‖∂ℓ_j/∂b‖²`` (the trained ones) of one layer, per record
    (module docstring)."""
    if rows.inputs.shape[1] == 1:  # one row per record
        if weight:
            squared = squared + rows.weight_grads[:, 0].pow(2).sum(dim=1) * rows.inputs[:, 0].pow(2).sum(dim=1)
        if bias:
            squared = squared + rows.bias_grads[:, 0].pow(2).sum(dim=1)
        return squared
    if weight:
        rows_in, rows_out = rows.inputs, rows.weight_grads
        count, fan_in, fan_out = rows_in.shape[1], rows_in.shape[2], rows_out.shape[2]
        if count * count <= fan_in * fan_out:  # two (T, T) Gram matrices per record
            gram_in = rows_in @ rows_in.transpose(1, 2)
            gram_out = rows_out @ rows_out.transpose(1, 2)
            squared = squared + (gram_in * gram_out).sum(dim=(1, 2))
        else:  # the (out, in) gradient per record is smaller
            squared = squared + (rows_out.transpose(1, 2) @ rows_in).pow(2).sum(dim=(1, 2))
    if bias:
        squared = squared + rows.bias_grads.sum(dim=1).pow(2).sum(dim=1)
    return squared


def _bookkept_sums(used: list[tuple[nn.Linear, bool, bool]], layer_rows: list[_LayerRows],
                   factors: Tensor) -> dict[int, Tensor]:
    """``Σ_j c_j ∂ℓ_j/∂θ`` of the layers' parameters from their captured rows (book-keeping),
    by ``id`` of θ: ``Σ_{j,t} c_j g_{jt} a_{jt}ᵀ`` and ``Σ_{j,t} c_j g_{jt}``."""
    sums: dict[int, Tensor] = {}
    for (layer, weight, bias), rows in zip(used, layer_rows):
        if weight:
            weighted = rows.weight_grads * factors[:, None, None]
            sums[id(layer.weight)] = (weighted.reshape(-1, weighted.shape[-1]).T
                                      @ rows.inputs.reshape(-1, rows.inputs.shape[-1]))
        if bias:
            sums[id(layer.bias)] = (rows.bias_grads * factors[:, None, None]).sum(dim=(0, 1))
    return sums


def split_batch_losses(result: BatchLosses) -> tuple[Tensor, Mapping[str, Tensor]]:
    """``batch_losses()``'s result as ``(losses, per-record copies)``."""
    return result if isinstance(result, tuple) else (result, {})


def _uses(losses: Tensor, parameters: Mapping[str, nn.Parameter]) -> dict[int, int]:
    """How many operations of the losses' autograd graph take each trained parameter as an
    input (by ``id``): the edges into its gradient accumulator."""
    wanted = {id(p) for p in parameters.values()}
    uses: dict[int, int] = {}
    seen: set[object] = set()
    stack = [losses.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is None:
                continue
            variable = getattr(child, "variable", None)
            if variable is not None and id(variable) in wanted:
                uses[id(variable)] = uses.get(id(variable), 0) + 1
            else:
                stack.append(child)
    return uses


def _check_uses(losses: Tensor, parameters: Mapping[str, nn.Parameter], used: list[tuple[nn.Linear, bool, bool]],
                captured: Mapping[nn.Module, list[_Call]], copies: Mapping[str, Tensor]) -> None:
    """ValueError unless every trained parameter reaches the losses only through the captured
    calls of its layer (one use per call) or through its per-record copies (one use each): a
    parameter used anywhere else would carry gradient that the norms do not see."""
    expected: dict[int, int] = {}
    for layer, weight, bias in used:
        for parameter, trained in ((layer.weight, weight), (layer.bias, bias)):
            if trained:
                expected[id(parameter)] = len(captured[layer])
    for name in copies:
        expected[id(parameters[name])] = expected.get(id(parameters[name]), 0) + 1
    uses = _uses(losses, parameters)
    extra = [name for name, p in parameters.items() if uses.get(id(p), 0) > expected.get(id(p), 0)]
    if extra:
        raise ValueError("ghost clipping needs every trained parameter to reach the losses only through its linear "
                         f"layer's calls or its per-record copy; used elsewhere too: {extra}")


def linear_clipped_sum(model: nn.Module, parameters: Mapping[str, nn.Parameter],
                       batch_losses: Callable[[], BatchLosses], clip_norm: float,
                       bookkeeping: bool = False) -> dict[str, Tensor]:
    """``Σ_j clip(∇ℓ_j, C)`` over ``parameters`` (jointly clipped), for the per-record
    losses ``batch_losses()`` of ``model`` (module docstring).

    ``bookkeeping``: the sum from the rows captured for the norms, ``Σ_{j,t} c_j g_{jt}
    a_{jt}ᵀ`` per layer (Bu et al. 2023), instead of the second backward pass of
    ``Σ_j c_j ℓ_j`` — the same sum up to floating-point rounding, one backward pass in all.
    Needs every trained parameter to reach the losses only through the captured calls and
    copies (the preconditions of the norms)."""
    layers = _trained_linears(model, parameters)
    captured: dict[nn.Module, list[_Call]] = {layer: [] for layer, _, _ in layers}

    def capture(layer: nn.Module, args: tuple[Tensor, ...], kwargs: dict[str, Tensor | None], output: Tensor) -> None:
        captured[layer].append(_Call(args, kwargs, output, getattr(layer, "row_scaled", False)))

    handles = [layer.register_forward_hook(capture, with_kwargs=True) for layer, _, _ in layers]
    try:
        result = batch_losses()
    finally:
        for handle in handles:
            handle.remove()
    losses, copies = split_batch_losses(result)
    if losses.dim() != 1:
        raise ValueError(f"batch_losses must return one loss per record, got shape {tuple(losses.shape)}")
    copies = {name: copy for name, copy in copies.items() if name in parameters}  # the trained ones
    _check_coverage(parameters, layers, copies)
    batch = losses.shape[0]
    for layer, calls in captured.items():
        if any(call.input.dim() < 2 or call.input.shape[0] != batch for call in calls):
            raise ValueError(f"ghost clipping needs the batch's {batch} records along the first dimension of "
                             f"every input of a trained linear layer; got {[tuple(c.input.shape) for c in calls]} "
                             f"for {layer}")
    used = [(layer, weight, bias) for layer, weight, bias in layers if captured[layer]]
    _check_uses(losses, parameters, used, captured, copies)
    outputs = [call.output for layer, _, _ in used for call in captured[layer]]
    grads = list(torch.autograd.grad(losses.sum(), outputs + list(copies.values()), retain_graph=not bookkeeping,
                                     allow_unused=True))
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(outputs + list(copies.values()), grads)]
    squared = torch.zeros_like(losses)
    layer_rows, position = [], 0
    for layer, weight, bias in used:
        count = len(captured[layer])
        layer_rows.append(_LayerRows(captured[layer], grads[position:position + count], batch))
        squared = _add_layer_norms(squared, layer_rows[-1], weight, bias)
        position += count
    for copy_grad in grads[position:]:
        squared = squared + copy_grad.reshape(batch, -1).pow(2).sum(dim=1)
    factors = clip_factors(squared.clamp_min(0.0).sqrt(), clip_norm).detach()  # a Gram sum may round below 0
    names = list(parameters)
    if bookkeeping:
        by_id = _bookkept_sums(used, layer_rows, factors)
        for name, copy_grad in zip(copies, grads[position:]):
            by_id[id(parameters[name])] = torch.einsum("b,b...->...", factors, copy_grad)
        return {name: by_id.get(id(p), torch.zeros_like(p)) for name, p in parameters.items()}
    sums = torch.autograd.grad((losses * factors).sum(), [parameters[n] for n in names], allow_unused=True)
    return {name: (torch.zeros_like(parameters[name]) if s is None else s) for name, s in zip(names, sums)}
