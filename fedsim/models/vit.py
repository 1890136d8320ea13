"""A compact DINOv2-compatible Vision Transformer in pure PyTorch (no timm).

The module tree and parameter names follow facebookresearch/dinov2's
``DinoVisionTransformer`` as its torch.hub backbones build it (``block_chunks=0``,
MLP feed-forward, LayerScale, no register tokens), so the official checkpoints
``dinov2_vits14_pretrain.pth`` / ``dinov2_vitb14_pretrain.pth`` load with
``load_state_dict(strict=True)``::

    cls_token (1, 1, D)        pos_embed (1, 1 + G*G, D)     mask_token (1, D)
    patch_embed.proj.{weight,bias}                          Conv2d(3, D, 14, stride 14)
    blocks.{i}.norm1.{weight,bias}   blocks.{i}.attn.qkv.{weight,bias}
    blocks.{i}.attn.proj.{weight,bias}   blocks.{i}.ls1.gamma
    blocks.{i}.norm2.{weight,bias}   blocks.{i}.mlp.fc1.{weight,bias}
    blocks.{i}.mlp.fc2.{weight,bias}     blocks.{i}.ls2.gamma
    norm.{weight,bias}

``G = pretrain_img_size / patch_size`` (518 / 14 = 37 for DINOv2).  The learned
position embedding is resized bicubically to the input's patch grid at run time,
exactly as DINOv2's ``interpolate_pos_encoding`` does (scale factor with the 0.1
offset, no antialiasing).  The output of :meth:`DinoVisionTransformer.forward`
is the final-LayerNorm'd CLS token, DINOv2's standard image embedding (384-d for
ViT-S/14, 768-d for ViT-B/14).  ``mask_token`` is only used in DINOv2 training;
it is kept so that official checkpoints load strictly.

timm's ``vit_{small,base}_patch14_dinov2`` state dicts use the same names except
that they have no ``mask_token`` (timm's converter drops it);
:func:`normalize_state_dict` accepts them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-6
INTERPOLATE_OFFSET = 0.1
"""DINOv2's historical offset added to the target grid before computing the scale factor."""


@dataclass(frozen=True)
class VitSpec:
    """Architecture of one ViT encoder."""

    embed_dim: int
    """Token width ``D`` (= the embedding dimension)."""
    depth: int
    """Number of transformer blocks."""
    num_heads: int
    """Attention heads per block (``embed_dim`` must be divisible by it)."""
    mlp_ratio: float = 4.0
    """Hidden width of each MLP as a multiple of ``embed_dim``."""
    patch_size: int = 14
    """Side of the square patches (and stride of the patch-embedding convolution)."""
    pretrain_img_size: int = 518
    """Image side the position embedding was learned for (grid = this / patch_size)."""
    layerscale_init: float = 1.0
    """Initial LayerScale gamma for random init (DINOv2 hub models use 1.0)."""
    checkpoint: str | None = None
    """Official checkpoint file name (what torch.hub caches), or None for test specs."""
    url: str | None = None
    """Where the official checkpoint is published (for the missing-weights message)."""

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.pretrain_img_size % self.patch_size:
            raise ValueError(f"pretrain_img_size {self.pretrain_img_size} is not a multiple of {self.patch_size}")

    @property
    def grid_size(self) -> int:
        """Side of the pretraining patch grid (37 for DINOv2)."""
        return self.pretrain_img_size // self.patch_size


_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/{name}/{name}_pretrain.pth"

SPECS: dict[str, VitSpec] = {
    "dinov2_vits14": VitSpec(
        384, 12, 6, checkpoint="dinov2_vits14_pretrain.pth", url=_DINOV2_URL.format(name="dinov2_vits14")
    ),
    "dinov2_vitb14": VitSpec(
        768, 12, 12, checkpoint="dinov2_vitb14_pretrain.pth", url=_DINOV2_URL.format(name="dinov2_vitb14")
    ),
    # A tiny test encoder: runs with seeded random weights, no file needed.
    "tiny-random": VitSpec(32, 2, 2, pretrain_img_size=224),
}
"""Encoders by name.  Only specs without a ``checkpoint`` may run with random weights."""


def get_spec(name: str) -> VitSpec:
    """The :class:`VitSpec` registered as ``name`` (KeyError naming the valid ones otherwise)."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; valid are {', '.join(SPECS)}") from None


# ----------------------------------------------------------------------------- modules


class PatchEmbed(nn.Module):
    """Image (B, 3, H, W) -> patch tokens (B, H/p * W/p, D) by a strided convolution."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"input size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # scale 1/sqrt(head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    """Per-channel learned scale ``gamma`` on a residual branch."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, spec: VitSpec) -> None:
        super().__init__()
        dim = spec.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, spec.num_heads)
        self.ls1 = LayerScale(dim, spec.layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * spec.mlp_ratio))
        self.ls2 = LayerScale(dim, spec.layerscale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT backbone; ``forward(images)`` returns the normed CLS token (B, D)."""

    def __init__(self, spec: VitSpec) -> None:
        super().__init__()
        self.spec = spec
        dim = spec.embed_dim
        self.embed_dim = dim
        self.patch_size = spec.patch_size
        self.patch_embed = PatchEmbed(spec.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + spec.grid_size**2, dim))
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> "DinoVisionTransformer":
        """Random init as DINOv2/timm do, drawn only from ``generator`` (no global RNG)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02, generator=generator)
                if module.bias is not None:  # every Linear and Conv2d of the ViT has one
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, LayerScale):
                module.gamma.fill_(self.spec.layerscale_init)
        nn.init.trunc_normal_(self.pos_embed, std=0.02, generator=generator)
        nn.init.normal_(self.cls_token, std=1e-6, generator=generator)
        nn.init.zeros_(self.mask_token)
        return self

    def interpolate_pos_encoding(self, num_tokens: int, height: int, width: int) -> torch.Tensor:
        """Position embedding for an input of ``height`` x ``width`` pixels (1, 1 + gh*gw, D).

        Bicubic resize of the pretraining grid, as DINOv2's ``interpolate_pos_encoding``
        (scale factor ``(g + 0.1) / G`` per axis, no antialiasing).
        """
        n_pos = self.pos_embed.shape[1] - 1
        if num_tokens - 1 == n_pos and height == width:
            return self.pos_embed
        grid = self.spec.grid_size
        gh, gw = height // self.patch_size, width // self.patch_size
        pos = self.pos_embed.float()
        patch_pos = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(
            patch_pos,
            scale_factor=((gh + INTERPOLATE_OFFSET) / grid, (gw + INTERPOLATE_OFFSET) / grid),
            mode="bicubic",
            antialias=False,
        )
        if patch_pos.shape[-2:] != (gh, gw):  # cannot happen with the 0.1 offset; guard anyway
            raise RuntimeError(f"position grid {tuple(patch_pos.shape[-2:])} != patch grid {(gh, gw)}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(self.pos_embed.dtype)

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """All final normed tokens (B, 1 + patches, D): CLS first, then patches row by row."""
        height, width = images.shape[-2:]
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x.shape[1], height, width)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W), H and W multiples of 14 -> CLS embeddings (B, D)."""
        return self.forward_tokens(images)[:, 0]


# ----------------------------------------------------------------------------- building, loading


def build_vit(spec: VitSpec | str, generator: torch.Generator | None = None) -> DinoVisionTransformer:
    """A model for ``spec``; random init from ``generator``, or uninitialised memory when None.

    Construction runs on the meta device, so it neither touches the global RNG nor
    spends time initialising weights that a checkpoint will overwrite: pass
    ``generator=None`` only when you load a state dict next.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    with torch.device("meta"):
        model = DinoVisionTransformer(spec)
    model = model.to_empty(device="cpu")
    if generator is not None:
        model.init_weights(generator)
    return model.eval()


_CONTAINER_KEYS = ("state_dict", "model")


def normalize_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: DinoVisionTransformer
) -> dict[str, torch.Tensor]:
    """Map a checkpoint onto ``model``'s parameter names.

    Accepted: the official DINOv2 format as is; a ``{"state_dict" | "model": {...}}``
    wrapper; ``module.`` / ``backbone.`` key prefixes (DDP, training wrappers);
    timm's format (no ``mask_token``: the model's zeros are used, it only matters
    in DINOv2 training) and a timm classifier ``head.*`` (dropped: the embedding is
    taken before the head).  Anything else is left for ``load_state_dict(strict=True)``
    to report.
    """
    for key in _CONTAINER_KEYS:
        inner = state_dict.get(key) if isinstance(state_dict, Mapping) else None
        if isinstance(inner, Mapping) and not any(isinstance(v, torch.Tensor) for v in state_dict.values()):
            state_dict = inner
            break
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = re.sub(r"^(module\.|backbone\.)+", "", key)
        if key.startswith("head."):
            continue
        out[key] = value
    if "mask_token" not in out and "cls_token" in out:
        out["mask_token"] = torch.zeros_like(model.mask_token)
    return out


def load_vit_weights(model: DinoVisionTransformer, state_dict: Mapping[str, torch.Tensor]) -> DinoVisionTransformer:
    """Load ``state_dict`` (after :func:`normalize_state_dict`) strictly; RuntimeError on any mismatch."""
    model.load_state_dict(normalize_state_dict(state_dict, model), strict=True)
    return model.eval()
