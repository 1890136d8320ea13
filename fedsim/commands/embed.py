"""``python -m fedsim.run embed``: images -> embeddings with a frozen DINOv2 encoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class EmbedCommand:
    """Turn images (a MedMNIST .npz, or a folder with a CSV of file, label and optional
    site/split) into DINOv2 CLS embeddings in fedsim's Parquet format.  Weights come
    from --weights or the torch hub cache only; nothing is downloaded."""

    images: Path
    """MedMNIST-style .npz (train/val/test _images and _labels), or a folder (or .csv) with columns file, label, optional site and split."""
    out: Path
    """Output Parquet file (written atomically)."""
    encoder: Literal["dinov2_vits14", "dinov2_vitb14", "tiny-random"] = "dinov2_vits14"
    """Frozen encoder: DINOv2 ViT-S/14 (384-d), ViT-B/14 (768-d), or a tiny random test ViT (32-d)."""
    weights: Path | None = None
    """Checkpoint file (official dinov2_*_pretrain.pth or timm format); default: $TORCH_HOME/hub/checkpoints/<official name>."""
    image_size: int = 224
    """Side of the square model input in pixels (a multiple of 14)."""
    batch_size: int = 64
    """Images per forward pass."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to run the encoder: auto uses a CUDA GPU when present, else the CPU."""
    seed: int = 0
    """Seed of the random weights of tiny-random (other encoders ignore it)."""

    def execute(self) -> int:
        """Embed the images, write ``out``, print a one-line summary; return 0."""
        from fedsim.data.embed import embed_images

        result = embed_images(
            self.images,
            self.out,
            encoder=self.encoder,
            weights=self.weights,
            image_size=self.image_size,
            batch_size=self.batch_size,
            device=self.device,
            seed=self.seed,
        )
        print(f"wrote {result.n} embeddings of dimension {result.dim} ({result.encoder}) to {result.path}")
        return 0
