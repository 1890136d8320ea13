"""The DINOv2-compatible ViT: checkpoint key names, position-embedding interpolation,
seeded init, and agreement with a plain (non-SDPA) reference forward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fedsim.models.vit import (
    SPECS,
    DinoVisionTransformer,
    VitSpec,
    build_vit,
    get_spec,
    load_vit_weights,
    normalize_state_dict,
)

# Keys of the official facebookresearch/dinov2 checkpoints (dinov2_vit{s,b}14_pretrain.pth):
# the top-level ones, and those of one block (blocks.{i}. prefix, i = 0..11).
OFFICIAL_TOP_KEYS = {
    "cls_token": (1, 1, None),
    "pos_embed": (1, 1 + 37 * 37, None),
    "mask_token": (1, None),
    "patch_embed.proj.weight": (None, 3, 14, 14),
    "patch_embed.proj.bias": (None,),
    "norm.weight": (None,),
    "norm.bias": (None,),
}
OFFICIAL_BLOCK_KEYS = {
    "norm1.weight": (None,),
    "norm1.bias": (None,),
    "attn.qkv.weight": ("3D", None),
    "attn.qkv.bias": ("3D",),
    "attn.proj.weight": (None, None),
    "attn.proj.bias": (None,),
    "ls1.gamma": (None,),
    "norm2.weight": (None,),
    "norm2.bias": (None,),
    "mlp.fc1.weight": ("4D", None),
    "mlp.fc1.bias": ("4D",),
    "mlp.fc2.weight": (None, "4D"),
    "mlp.fc2.bias": (None,),
    "ls2.gamma": (None,),
}


def _expected_shape(template: tuple, dim: int) -> tuple[int, ...]:
    sizes = {None: dim, "3D": 3 * dim, "4D": 4 * dim}
    return tuple(sizes[t] if t in sizes else t for t in template)


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vitb14"])
def test_state_dict_matches_official_checkpoint_keys(name: str) -> None:
    spec = get_spec(name)
    with torch.device("meta"):  # no memory, no init: just the module tree
        model = DinoVisionTransformer(spec)
    expected = {k: _expected_shape(v, spec.embed_dim) for k, v in OFFICIAL_TOP_KEYS.items()}
    for i in range(12):
        expected.update({f"blocks.{i}.{k}": _expected_shape(v, spec.embed_dim) for k, v in OFFICIAL_BLOCK_KEYS.items()})
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert actual == expected
    assert len(actual) == 175
    assert (spec.embed_dim, spec.depth, spec.num_heads) == {"dinov2_vits14": (384, 12, 6), "dinov2_vitb14": (768, 12, 12)}[name]
    assert spec.checkpoint == f"{name}_pretrain.pth"


def test_unknown_spec_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="dinov2_vits14"):
        get_spec("vit_huge")


def test_tiny_output_shape_and_seeded_init() -> None:
    a = build_vit("tiny-random", torch.Generator().manual_seed(1))
    b = build_vit("tiny-random", torch.Generator().manual_seed(1))
    c = build_vit("tiny-random", torch.Generator().manual_seed(2))
    x = torch.rand(3, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ya, yb, yc = a(x), b(x), c(x)
    assert ya.shape == (3, SPECS["tiny-random"].embed_dim) and ya.dtype == torch.float32
    assert torch.equal(ya, yb)
    assert not torch.allclose(ya, yc)


def test_construction_does_not_touch_global_rng() -> None:
    state = torch.random.get_rng_state()
    build_vit("tiny-random", torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.random.get_rng_state())


def _reference_forward(model: DinoVisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """The DINOv2 forward written out with explicit softmax attention."""
    x = model.patch_embed.proj(images).flatten(2).transpose(1, 2)
    x = torch.cat((model.cls_token.expand(len(x), -1, -1), x), dim=1)
    x = x + model.interpolate_pos_encoding(x.shape[1], *images.shape[-2:])
    for block in model.blocks:
        h = block.norm1(x)
        b, n, d = h.shape
        heads = block.attn.num_heads
        q, k, v = block.attn.qkv(h).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attention = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        x = x + block.ls1.gamma * block.attn.proj((attention @ v).transpose(1, 2).reshape(b, n, d))
        x = x + block.ls2.gamma * block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(x))))
    return model.norm(x)[:, 0]


def test_forward_matches_explicit_attention_reference() -> None:
    model = build_vit("tiny-random", torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 42, 42, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), _reference_forward(model, x), atol=1e-5, rtol=1e-5)


def test_pos_embed_interpolation_for_non_pretraining_sizes() -> None:
    spec = VitSpec(embed_dim=16, depth=1, num_heads=2)  # DINOv2's 518 px / 37x37 grid
    model = build_vit(spec, torch.Generator().manual_seed(0))
    assert model.pos_embed.shape == (1, 1 + 37 * 37, 16)
    # the pretraining size returns the learned table itself
    assert model.interpolate_pos_encoding(1 + 37 * 37, 518, 518) is model.pos_embed
    for grid in range(1, 75):  # every grid up to 1036 px comes out with the exact size
        pos = model.interpolate_pos_encoding(1 + grid * grid, 14 * grid, 14 * grid)
        assert pos.shape == (1, 1 + grid * grid, 16)
        assert torch.equal(pos[:, 0], model.pos_embed[:, 0])  # the CLS position is never resized
    pos = model.interpolate_pos_encoding(1 + 2 * 3, 28, 42)  # non-square
    assert pos.shape == (1, 7, 16)
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 28, 42)).shape == (2, 16)
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 16)


def test_input_not_multiple_of_patch_is_rejected() -> None:
    model = build_vit("tiny-random", torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.zeros(1, 3, 30, 28))


def test_strict_load_roundtrip_and_timm_format() -> None:
    source = build_vit("tiny-random", torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        want = source(x)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    # official format, strict
    official = load_vit_weights(build_vit("tiny-random"), state)
    # timm format: no mask_token; a classifier head is ignored; DDP 'module.' prefix is stripped
    timm = {k: v for k, v in state.items() if k != "mask_token"}
    timm["head.weight"], timm["head.bias"] = torch.zeros(5, 32), torch.zeros(5)
    timm_model = load_vit_weights(build_vit("tiny-random"), {f"module.{k}": v for k, v in timm.items()})
    wrapped = load_vit_weights(build_vit("tiny-random"), {"state_dict": state})
    with torch.inference_mode():
        for model in (official, timm_model, wrapped):
            assert torch.equal(model(x), want)
    assert "mask_token" in normalize_state_dict(timm, official)


def test_strict_load_rejects_wrong_architecture() -> None:
    state = build_vit("tiny-random", torch.Generator().manual_seed(0)).state_dict()
    bigger = VitSpec(embed_dim=32, depth=3, num_heads=2, pretrain_img_size=224)
    with pytest.raises(RuntimeError, match="blocks.2"):
        load_vit_weights(build_vit(bigger), state)
