"""Images -> embeddings with a frozen DINOv2 encoder (step 1 of the pipeline).

Inputs (:func:`open_images`):

* a MedMNIST-style ``.npz`` with pairs ``<split>_images`` / ``<split>_labels``
  (``train``, ``val``, ``test``, ...): images ``(N, H, W)`` grey or ``(N, H, W, 3)``
  RGB (``(N, H, W, 1)`` counts as grey), uint8 (or uint16, or float in [0, 1]);
  labels ``(N,)`` or ``(N, 1)``.  Every split becomes the ``split`` column.
* a folder with one CSV (or the CSV itself): columns ``file`` (or ``filename``,
  relative to the CSV's folder), ``label`` (integers, or names that become
  classes 0..K-1 in sorted order), optional ``site`` and ``split``.

Preprocessing follows DINOv2's evaluation transform: grey -> RGB by repeating the
channel, scale to [0, 1], bicubic antialiased resize of the shorter side to
``image_size`` and a centre crop (for square images, such as MedMNIST's, simply a
resize to ``image_size`` x ``image_size``), then ImageNet mean/std normalisation.
The embedding is the final-LayerNorm'd CLS token (:mod:`fedsim.models.vit`).

Weights come only from a local file (``weights=``) or the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<official file name>``, where
``torch.hub.load('facebookresearch/dinov2', ...)`` puts them); nothing is
downloaded.  The output is fedsim's Parquet layout (:mod:`fedsim.data.io`), written
atomically, with ``fedsim.encoder``, ``fedsim.image_size``, ``fedsim.source`` and
``fedsim.weights`` in the schema metadata.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from fedsim.errors import UserError

if TYPE_CHECKING:  # torch is imported lazily (keeps `--help` and the data layer light)
    import torch

    from fedsim.models.vit import DinoVisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLIT_ORDER = ("train", "val", "test")
FILE_COLUMNS = ("file", "filename")
DEVICES = ("auto", "cpu", "cuda")


# ----------------------------------------------------------------------------- image sources


@dataclass(frozen=True, eq=False)
class ImageSource:
    """Labelled images, read in batches; ``site``/``split``/``class_names`` when known."""

    path: Path
    labels: np.ndarray
    """int64 labels, shape (n,)."""
    split: np.ndarray | None
    site: np.ndarray | None
    class_names: tuple[str, ...] | None
    _npz_keys: tuple[str, ...] = ()
    """For an npz: the ``<split>_images`` keys, in row order."""
    _files: tuple[Path, ...] = ()
    """For a folder: one image file per row."""

    def __len__(self) -> int:
        return int(len(self.labels))

    def batches(self, batch_size: int) -> Iterator[np.ndarray | list[np.ndarray]]:
        """Raw images in row order: an (B, H, W[, C]) array (npz) or a list of arrays (folder)."""
        if self._npz_keys:
            with np.load(self.path, allow_pickle=False) as npz:
                for key in self._npz_keys:
                    images = npz[key]  # one split in memory at a time
                    for start in range(0, len(images), batch_size):
                        yield images[start : start + batch_size]
                    del images
        else:
            for start in range(0, len(self._files), batch_size):
                yield [_read_image(f) for f in self._files[start : start + batch_size]]


def open_images(path: str | Path) -> ImageSource:
    """Validate an image input (``.npz`` or a folder/CSV, see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"{path} does not exist; give a MedMNIST .npz file or a folder with a CSV of file, label (and site)."
        )
    if path.is_file() and path.suffix.lower() == ".npz":
        return _open_npz(path)
    if path.is_dir() or path.suffix.lower() == ".csv":
        return _open_folder(path)
    raise UserError(f"{path} is neither an .npz file nor a folder or .csv file; give one of those.")


def _npy_header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array in an npz without reading its data."""
    with archive.open(f"{key}.npy") as handle:
        version = np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(handle)
    return tuple(shape), dtype


def _int_labels(where: str, y: np.ndarray) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(
            f"{where} has shape {y.shape}; labels must be (N,) or (N, 1) single-label class ids "
            "(multi-label data sets are not supported)."
        )
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
        raise UserError(f"{where} holds {y.dtype} values (first {y[:1].tolist()}); labels must be integers >= 0.")
    return y.astype(np.int64)


def _open_npz(path: Path) -> ImageSource:
    try:
        with zipfile.ZipFile(path) as archive:
            keys = [name[: -len(".npy")] for name in archive.namelist() if name.endswith(".npy")]
            headers = {k: _npy_header(archive, k) for k in keys if k.endswith("_images")}
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable .npz file ({error}).") from None
    prefixes = [k[: -len("_images")] for k in headers]
    prefixes.sort(key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
    if not prefixes:
        raise UserError(
            f"{path} has no '<split>_images' array (it has: {', '.join(keys) or 'none'}); "
            "valid are pairs like train_images/train_labels, val_images/val_labels, test_images/test_labels."
        )
    for prefix in prefixes:
        if f"{prefix}_labels" not in keys:
            raise UserError(f"{path} has '{prefix}_images' but no '{prefix}_labels'; every images array needs its labels.")
    labels, splits = [], []
    with np.load(path, allow_pickle=False) as npz:
        for prefix in prefixes:
            shape, dtype = headers[f"{prefix}_images"]
            key = f"{path}: array '{prefix}_images'"
            if not (len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3))):
                raise UserError(f"{key} has shape {shape}; valid are (N, H, W) grey or (N, H, W, 3) RGB images.")
            if dtype.kind not in "uf" or (dtype.kind == "u" and dtype.itemsize > 2):
                raise UserError(f"{key} has dtype {dtype}; valid are uint8, uint16 or float in [0, 1].")
            try:
                raw = npz[f"{prefix}_labels"]
            except ValueError:  # a pickled object array
                raise UserError(f"{path}: array '{prefix}_labels' is a pickled object array; save integer labels.") from None
            y = _int_labels(f"{path}: array '{prefix}_labels'", raw)
            if len(y) != shape[0]:
                raise UserError(
                    f"{path}: '{prefix}_labels' has {len(y)} labels for {shape[0]} images in '{prefix}_images'; "
                    "give exactly one label per image."
                )
            labels.append(y)
            splits.append(np.full(len(y), prefix, dtype=object))
    y = np.concatenate(labels)
    if len(y) == 0:
        raise UserError(f"{path} holds no images; give at least one image.")
    return ImageSource(
        path, y, np.concatenate(splits), None, None, _npz_keys=tuple(f"{p}_images" for p in prefixes)
    )


def _find_csv(path: Path) -> Path:
    if path.is_file():
        return path
    csvs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv")
    if len(csvs) == 1:
        return csvs[0]
    named = [p for p in csvs if p.stem.lower() in ("labels", "metadata", "index")]
    if len(named) == 1:
        return named[0]
    found = ", ".join(p.name for p in csvs) or "none"
    raise UserError(
        f"{path} must hold exactly one .csv of file, label (and site) columns (found: {found}); "
        "give the CSV file itself as --images."
    )


def _open_folder(path: Path) -> ImageSource:
    import pandas as pd

    csv = _find_csv(path)
    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"{csv} is not a readable CSV file ({error}).") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    file_column = next((c for c in FILE_COLUMNS if c in table.columns), None)
    missing = [name for name, ok in (("file", file_column), ("label", "label" in table.columns)) if not ok]
    if missing:
        raise UserError(
            f"{csv} has no column {' or '.join(repr(m) for m in missing)} (it has: {', '.join(table.columns)}); "
            "valid columns are file (or filename), label, and optional site and split."
        )
    if len(table) == 0:
        raise UserError(f"{csv} has no rows; give one row per image.")
    columns = [file_column, "label"] + [c for c in ("site", "split") if c in table.columns]
    for column in columns:
        empty = table[column].isna().to_numpy()
        if empty.any():
            row = int(np.argmax(empty))
            raise UserError(f"{csv}: column '{column}' row {row} is empty; every row needs a value.")
    files = tuple(csv.parent / name.strip() for name in table[file_column])
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise UserError(
            f"{csv}: image file {absent[0]} does not exist ({len(absent)} of {len(files)} missing); "
            "file names are relative to the CSV's folder."
        )
    raw = table["label"].str.strip()
    as_int = pd.to_numeric(raw, errors="coerce")
    class_names = None
    if as_int.notna().all() and (as_int == as_int.round()).all():
        y = _int_labels(f"{csv}: column 'label'", as_int.to_numpy())
    else:
        class_names = tuple(sorted(raw.unique()))
        y = np.searchsorted(np.asarray(class_names, dtype=object), raw.to_numpy(dtype=object)).astype(np.int64)
    text = {c: table[c].str.strip().to_numpy(dtype=object) if c in table.columns else None for c in ("site", "split")}
    return ImageSource(path, y, text["split"], text["site"], class_names, _files=files)


def _read_image(file: Path) -> np.ndarray:
    """One image file -> (H, W) grey or (H, W, 3) RGB array (uint8 or uint16)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            if image.mode in ("L", "I;16", "I;16L", "I;16B", "RGB"):
                array = np.array(image)
            elif image.mode == "I":
                array = np.array(image)
                if array.min() < 0 or array.max() > 65535:
                    raise UserError(f"{file} is a 32-bit integer image with values beyond 0..65535; save it as 8 or 16 bit.")
                array = array.astype(np.uint16)
            elif image.mode == "F":
                raise UserError(f"{file} is a floating-point image; save it as an 8- or 16-bit grey or RGB image.")
            else:  # 1, P, LA, RGBA, CMYK, YCbCr, ...: alpha is dropped
                array = np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"{file} is not a readable image ({error}).") from None
    if array.dtype == np.dtype(">u2"):
        array = array.astype(np.uint16)
    return array


# ----------------------------------------------------------------------------- preprocessing


def preprocess(
    images: np.ndarray | Sequence[np.ndarray],
    image_size: int,
    device: "torch.device | str" = "cpu",
    where: str = "images",
) -> "torch.Tensor":
    """Raw images -> normalised (B, 3, image_size, image_size) float32 on ``device``.

    ``images``: one (B, H, W[, C]) array or a list of (H, W[, C]) arrays of any sizes;
    C is 1 (grey) or 3 (RGB); uint8, uint16 or float in [0, 1].  Grey is repeated
    to three channels, the shorter side is resized (bicubic, antialiased) to
    ``image_size`` and the centre cropped to a square, then ImageNet mean/std
    normalisation is applied.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(images, np.ndarray):
        return torch.cat([preprocess(image[None], image_size, device, where) for image in images])
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UserError(f"{where} have shape {images.shape[1:]}; valid are (H, W) grey or (H, W, 3) RGB images.")
    if images.dtype == np.uint8:
        scale = 255.0
    elif images.dtype == np.uint16:  # torch's uint16 support is limited: widen first
        images, scale = images.astype(np.int32), 65535.0
    elif images.dtype.kind == "f":
        scale = 1.0
        if images.size and (np.nanmin(images) < 0 or np.nanmax(images) > 1 or np.isnan(images).any()):
            raise UserError(f"{where} have float pixel values outside [0, 1]; scale them to [0, 1] or save them as uint8.")
    else:
        raise UserError(f"{where} have dtype {images.dtype}; valid are uint8, uint16 or float in [0, 1].")
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float() / scale
    x = x.permute(0, 3, 1, 2)  # B, C, H, W
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    height, width = x.shape[-2:]
    if (height, width) != (image_size, image_size):
        scale = image_size / min(height, width)
        size = (max(image_size, round(height * scale)), max(image_size, round(width * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0.0, 1.0)
        top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
        x = x[..., top : top + image_size, left : left + image_size]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


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
