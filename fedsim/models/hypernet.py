"""The hypernetwork-generated decoder of FedHypeVAE (paper Eq. 2–3).

Φ_θ holds the shared base decoder layers ``W_ℓ, b_ℓ`` and the hypernetwork ``h_θ``.
For a client code ``v`` the hypernetwork predicts, for every decoder layer ℓ, row
scales ``d_ℓ(v)`` and bias shifts ``Δb_ℓ(v)`` (row-scaled generation, Eq. 3):

    W_ℓ(v) = diag(d_ℓ(v)) W_ℓ,   b_ℓ(v) = b_ℓ + Δb_ℓ(v).

Scales are ``d_ℓ = exp(s_ℓ)`` with the output head initialised small, so every
generated decoder starts at ``W_ℓ(v) ≈ W_ℓ``.  ``diag(d) W a = d ⊙ (W a)``, so the
modulated weights are never materialised.

The decoder's layers are :class:`RowScaledLinear`: their forward takes the modulation, so
that ghost clipping (:mod:`fedsim.privacy.ghost_clipping`) sees each call's input, row
scales and output.  Every computation accepts leading record dimensions: one record
(``z`` of shape ``(latent,)``, scales ``(rows,)``) under ``torch.func.vmap``, or a batch
whose records each carry their own generated modulation (``z`` ``(B, …, latent)``,
scales ``(B, rows)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedsim.models.mlp import mlp

Modulation = list[tuple[Tensor, Tensor]]  # per decoder layer: (row scales d_ℓ, bias shifts Δb_ℓ)


class RowScaledLinear(nn.Linear):
    """``y = d ⊙ (W a) + b + Δb``: a base decoder layer under Eq. 3's modulation ``(d, Δb)``
    (``row_scaled``: how ghost clipping reads its calls, :mod:`fedsim.privacy.ghost_clipping`)."""

    row_scaled = True

    def forward(self, input: Tensor, scale: Tensor | None = None,  # noqa: A002 (nn.Linear's name)
                shift: Tensor | None = None) -> Tensor:
        """``scale ⊙ (W input) + b + shift`` (an omitted scale is 1, an omitted shift 0)."""
        product = input @ self.weight.T
        output = (product if scale is None else scale * product) + self.bias
        return output if shift is None else output + shift


def align_rows(rows: Tensor, hidden: Tensor) -> Tensor:
    """``rows`` (…, n) given the per-record extra dimensions of ``hidden`` (…, T, n): a
    record's modulation applies to each of its T rows (no-op when the shapes match)."""
    while rows.dim() < hidden.dim():
        rows = rows.unsqueeze(-2)
    return rows


class HyperDecoder(nn.Module):
    """Base decoder ``[z ‖ onehot(y)] → hidden… → d`` plus ``h_θ: v ↦ {d_ℓ, Δb_ℓ}``."""

    def __init__(self, code_dim: int, latent_dim: int, num_classes: int, hidden: list[int],
                 output_dim: int, hyper_hidden: int) -> None:
        super().__init__()
        sizes = [latent_dim + num_classes, *hidden, output_dim]
        linears = [RowScaledLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.base = nn.ModuleList(linears)
        self.rows = [layer.out_features for layer in linears]
        self.h_theta = mlp([code_dim, hyper_hidden, hyper_hidden], final_activation=True)
        self.head = nn.Linear(hyper_hidden, 2 * sum(self.rows))
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def generate(self, code: Tensor) -> Modulation:
        """``h_θ(v)``: the per-layer row scales and bias shifts of Eq. 3."""
        raw = self.head(self.h_theta(code))
        log_scales, shifts = raw.split(sum(self.rows), dim=-1)
        return list(zip(log_scales.exp().split(self.rows, dim=-1), shifts.split(self.rows, dim=-1)))

    def decode(self, modulation: Modulation, z: Tensor, onehot: Tensor) -> Tensor:
        """Decoder mean ``x̂(z, y)`` with the generated weights ``W_ℓ(v), b_ℓ(v)``."""
        hidden = torch.cat([z, onehot], dim=-1)
        last = len(self.base) - 1
        for index, (layer, (scale, shift)) in enumerate(zip(self.base, modulation)):
            hidden = layer(hidden, align_rows(scale, hidden), align_rows(shift, hidden))
            if index < last:
                hidden = torch.relu(hidden)
        return hidden

    def hyper_layers(self) -> list[nn.Linear]:
        """The layers of h_θ (targets of the Lipschitz penalty)."""
        return [m for m in self.h_theta if isinstance(m, nn.Linear)] + [self.head]


def mix_modulations(modulations: list[Modulation], weights: Tensor) -> Modulation:
    """Eq. 13: ``θ_mix = Σ_k π_k h_θ(v_k)``, applied to the generated scales and shifts."""
    mixed = []
    for layer_parts in zip(*modulations):
        scales = torch.stack([s for s, _ in layer_parts])
        shifts = torch.stack([b for _, b in layer_parts])
        mixed.append((torch.einsum("k,k...->...", weights, scales),
                      torch.einsum("k,k...->...", weights, shifts)))
    return mixed
