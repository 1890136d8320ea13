"""Labelled images for embedding extraction: MedMNIST ``.npz`` files and image folders
with a CSV, read in batches, and DINOv2's evaluation preprocessing.

Inputs (:func:`open_images`):

* a MedMNIST-style ``.npz`` with pairs ``<split>_images`` / ``<split>_labels``
  (``train``, ``val``, ``test``, ...): images ``(N, H, W)`` grey or ``(N, H, W, 3)``
  RGB (``(N, H, W, 1)`` counts as grey), uint8 (or uint16, or float in [0, 1]);
  labels ``(N,)`` or ``(N, 1)``.  Every split becomes the ``split`` column.
* a folder with one CSV (or the CSV itself): columns ``file`` (or ``filename``,
  relative to the CSV's folder), ``label`` (integers, or names that become
  classes 0..K-1 in sorted order), optional ``site`` and ``split``.

Preprocessing (:func:`preprocess`) follows DINOv2's evaluation transform: grey -> RGB
by repeating the channel, scale to [0, 1], bicubic antialiased resize of the shorter
side to ``image_size`` and a centre crop (for square images, such as MedMNIST's,
simply a resize to ``image_size`` x ``image_size``), then ImageNet mean/std
normalisation.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from fedsim.errors import UserError

if TYPE_CHECKING:  # torch is imported lazily
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLIT_ORDER = ("train", "val", "test")
FILE_COLUMNS = ("file", "filename")


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
