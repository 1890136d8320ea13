"""Images -> embeddings with a frozen DINOv2 encoder (step 1 of the pipeline).

Images come from :mod:`fedsim.data.images` (MedMNIST ``.npz`` or a folder with a
CSV, DINOv2's evaluation preprocessing).  The embedding is the final-LayerNorm'd CLS
token (:mod:`fedsim.models.vit`).

Weights come only from a local file (``weights=``) or the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<official file name>``, where
``torch.hub.load('facebookresearch/dinov2', ...)`` puts them); nothing is
downloaded.  The output is fedsim's Parquet layout (:mod:`fedsim.data.io`), written
atomically, with ``fedsim.encoder``, ``fedsim.image_size``, ``fedsim.source`` and
``fedsim.weights`` in the schema metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedsim.data.images import ImageSource, open_images, preprocess
from fedsim.errors import UserError

if TYPE_CHECKING:  # torch is imported lazily (keeps `--help` and the data layer light)
    import torch

    from fedsim.models.vit import DinoVisionTransformer

__all__ = ["DEVICES", "EmbedResult", "ImageSource", "compute_embeddings", "embed_images", "hub_checkpoint_path",
           "load_encoder", "open_images", "preprocess", "resolve_device", "resolve_weights"]

DEVICES = ("auto", "cpu", "cuda")


# ----------------------------------------------------------------------------- encoder


def hub_checkpoint_path(encoder: str) -> Path | None:
    """Where torch.hub caches ``encoder``'s official checkpoint (None for test specs)."""
    import torch

    from fedsim.models.vit import get_spec

    spec = get_spec(encoder)
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.checkpoint if spec.checkpoint else None


def resolve_weights(encoder: str, weights: str | Path | None = None) -> Path | None:
    """The weights file to load for ``encoder``: ``weights``, else the torch hub cache.

    Returns None only for specs that may run with random weights (``tiny-random``)
    when no file is given.  Raises :class:`UserError` (one sentence: the paths
    searched and how to fetch the file on a connected machine) otherwise.
    """
    spec = _spec(encoder)
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise UserError(f"--weights {weights} does not exist; give the path of a {encoder} checkpoint file.")
        return weights
    cached = hub_checkpoint_path(encoder)
    if cached is None:
        return None
    if cached.is_file():
        return cached
    fetch = f"python -c \"import torch; torch.hub.load_state_dict_from_url('{spec.url}')\""
    raise UserError(
        f"no weights for encoder '{encoder}': --weights was not given and {cached} does not exist "
        f"(nothing is downloaded at run time); on a connected machine run `{fetch}` "
        f"(or torch.hub.load('facebookresearch/dinov2', '{encoder}'), which caches the same file "
        f"in its torch hub checkpoints folder), then copy {spec.checkpoint} to {cached.parent}/ or pass --weights FILE."
    )


def _spec(encoder: str):
    from fedsim.models.vit import SPECS

    if encoder not in SPECS:
        raise UserError(f"unknown encoder '{encoder}'; valid are {', '.join(SPECS)}.")
    return SPECS[encoder]


def _read_state_dict(file: Path) -> dict:
    import torch

    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file), device="cpu")
        return torch.load(file, map_location="cpu", weights_only=True)
    except ImportError:
        raise UserError(f"{file} is a .safetensors file but the safetensors package is not installed; "
                        "install it or give the .pth checkpoint.") from None
    except Exception as error:  # noqa: BLE001 - any failure to read is a bad weights file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise UserError(f"{file} is not a readable PyTorch checkpoint ({first}).") from None


def load_encoder(encoder: str, weights: str | Path | None = None, seed: int = 0) -> "DinoVisionTransformer":
    """The frozen encoder ``encoder`` in eval mode, on the CPU.

    Weights from :func:`resolve_weights`; a spec without an official checkpoint
    (``tiny-random``) and no file gets seeded random weights (``seed``).
    """
    from fedsim.models.vit import build_vit, load_vit_weights
    from fedsim.seeding import torch_generator

    spec = _spec(encoder)
    file = resolve_weights(encoder, weights)
    if file is None:
        model = build_vit(spec, torch_generator(seed, "encoder", encoder))
    else:
        model = build_vit(spec, generator=None)
        state_dict = _read_state_dict(file)
        if not isinstance(state_dict, dict):
            raise UserError(f"{file} holds a {type(state_dict).__name__}, not a state dict; give a {encoder} checkpoint.")
        try:
            load_vit_weights(model, state_dict)
        except RuntimeError as error:
            detail = " ".join(str(error).split())[:300]
            raise UserError(f"{file} does not fit encoder '{encoder}' ({detail}); give the {encoder} checkpoint.") from None
    model.requires_grad_(False)
    return model.eval()


def resolve_device(device: str = "auto") -> "torch.device":
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU is a UserError."""
    import torch

    if device not in DEVICES:
        raise UserError(f"--device {device} is not valid; valid are {', '.join(DEVICES)}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was given but no CUDA GPU is available; use --device cpu or auto.")
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- inference, output


def compute_embeddings(
    model: "DinoVisionTransformer",
    source: ImageSource,
    *,
    image_size: int = 224,
    batch_size: int = 64,
    device: "torch.device | str" = "cpu",
    progress: bool = True,
    desc: str = "embed",
) -> np.ndarray:
    """Embed every image of ``source`` in row order: float32 (n, embed_dim)."""
    import torch
    from tqdm.auto import tqdm

    device = torch.device(device)
    model = model.to(device).eval()
    out = np.empty((len(source), model.embed_dim), dtype=np.float32)
    row = 0
    with torch.inference_mode(), tqdm(total=len(source), unit="img", desc=desc, disable=not progress) as bar:
        for raw in source.batches(batch_size):
            x = preprocess(raw, image_size, device, where=f"images of {source.path}")
            emb = model(x).float().cpu().numpy()
            out[row : row + len(emb)] = emb
            row += len(emb)
            bar.update(len(emb))
    if row != len(source):  # the npz changed under us, or a bug
        raise UserError(f"{source.path} yielded {row} images for {len(source)} labels; give one label per image.")
    return out


@dataclass(frozen=True)
class EmbedResult:
    """What :func:`embed_images` wrote."""

    path: Path
    n: int
    dim: int
    encoder: str


def embed_images(
    images: str | Path,
    out: str | Path,
    *,
    encoder: str = "dinov2_vits14",
    weights: str | Path | None = None,
    image_size: int = 224,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> EmbedResult:
    """Embed an image input (``.npz`` or folder/CSV) and write fedsim's Parquet file ``out``.

    Every input is validated before any inference; the file is written atomically,
    so on any error no (partial) ``out`` is left behind.
    """
    from fedsim.data.dataset import EmbeddingDataset
    from fedsim.data.io import write_embeddings

    out = Path(out)
    spec = _spec(encoder)
    if isinstance(image_size, bool) or image_size <= 0 or image_size % spec.patch_size:
        raise UserError(
            f"--image-size {image_size} is not a positive multiple of the patch size {spec.patch_size}; "
            f"use e.g. 224 (DINOv2's evaluation size)."
        )
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size} is not valid; give a positive integer such as 64.")
    if out.suffix.lower() != ".parquet":
        raise UserError(f"--out {out} must end in .parquet; fedsim writes embeddings as Parquet.")
    torch_device = resolve_device(device)
    source = open_images(images)
    file = resolve_weights(encoder, weights)
    model = load_encoder(encoder, file, seed)
    x = compute_embeddings(
        model, source, image_size=image_size, batch_size=batch_size, device=torch_device,
        progress=progress, desc=f"embed {encoder}",
    )
    dataset = EmbeddingDataset(
        x, source.labels, source.site, source.split, source.class_names, str(images),
        {
            "encoder": encoder,
            "image_size": image_size,
            "source": str(images),
            "weights": file.name if file is not None else f"random-init(seed={seed})",
        },
    )
    write_embeddings(out, dataset)
    return EmbedResult(out, len(x), int(x.shape[1]), encoder)
