"""Image -> embedding extraction with the tiny random ViT (no weights file, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fedsim.commands.embed import EmbedCommand
from fedsim.data.embed import (
    embed_images,
    hub_checkpoint_path,
    load_encoder,
    open_images,
    preprocess,
    resolve_weights,
)
from fedsim.data.io import load_embeddings
from fedsim.errors import UserError

TINY = dict(encoder="tiny-random", image_size=28, progress=False, device="cpu")
DIM = 32


def _images(n: int, size: int = 20, rgb: bool = False, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, size, size, 3) if rgb else (n, size, size)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _npz(path: Path, splits=(("train", 6), ("val", 2), ("test", 3)), rgb: bool = False, flat_labels=False) -> Path:
    arrays = {}
    for i, (split, n) in enumerate(splits):
        arrays[f"{split}_images"] = _images(n, rgb=rgb, seed=i)
        labels = (np.arange(n) % 3).astype(np.uint8)
        arrays[f"{split}_labels"] = labels if flat_labels else labels[:, None]  # MedMNIST: (N, 1)
    np.savez(path, **arrays)
    return path


def _read(path: Path) -> tuple[np.ndarray, dict, dict]:
    table = pq.read_table(path)
    x = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return x, table.to_pydict(), meta


def test_npz_output_format_and_split_column(tmp_path: Path) -> None:
    src = _npz(tmp_path / "organ.npz")
    result = embed_images(src, tmp_path / "out.parquet", **TINY)
    assert (result.n, result.dim) == (11, DIM)
    table = pq.read_table(result.path)
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == DIM and kind.value_type == pa.float32()
    assert table.schema.field("label").type == pa.int64()
    assert table.schema.field("split").type == pa.string()
    assert "site" not in table.column_names
    x, columns, meta = _read(result.path)
    assert x.shape == (11, DIM) and x.dtype == np.float32 and np.isfinite(x).all()
    assert columns["split"] == ["train"] * 6 + ["val"] * 2 + ["test"] * 3
    assert columns["label"] == [0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2]
    assert json.loads(meta["fedsim.encoder"]) == "tiny-random"
    assert json.loads(meta["fedsim.image_size"]) == 28
    assert json.loads(meta["fedsim.source"]) == str(src)
    # fedsim's own loader reads it back
    dataset = load_embeddings(result.path)
    assert dataset.x.shape == (11, DIM) and dataset.metadata["encoder"] == "tiny-random"
    assert not list(tmp_path.glob(".*.tmp"))


def test_determinism_and_batch_size_invariance(tmp_path: Path) -> None:
    src = _npz(tmp_path / "a.npz", flat_labels=True)
    a = _read(embed_images(src, tmp_path / "a.parquet", batch_size=4, **TINY).path)[0]
    b = _read(embed_images(src, tmp_path / "b.parquet", batch_size=4, **TINY).path)[0]
    c = _read(embed_images(src, tmp_path / "c.parquet", batch_size=1, **TINY).path)[0]
    d = _read(embed_images(src, tmp_path / "d.parquet", batch_size=4, seed=1, **TINY).path)[0]
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, c, atol=1e-5, rtol=0)
    assert not np.allclose(a, d)  # the seed chooses tiny-random's weights


def test_grey_equals_rgb_repeat() -> None:
    grey = _images(4, size=17)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    one = grey[..., None]
    a, b, c = (preprocess(v, 28) for v in (grey, rgb, one))
    assert a.shape == (4, 3, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(a, c)
    model = load_encoder("tiny-random", seed=0)
    with torch.inference_mode():
        assert torch.equal(model(a), model(b))


def test_preprocess_normalisation_and_size() -> None:
    white = np.full((1, 28, 28), 255, dtype=np.uint8)  # already at size: no resampling
    x = preprocess(white, 28)
    want = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[0, :, 5, 5], want)
    # non-square: shorter side to 28, then a centre crop
    assert preprocess(np.zeros((2, 30, 60, 3), np.uint8), 42).shape == (2, 3, 42, 42)
    # uint16 and float inputs scale to the same values as uint8
    grey = _images(2, size=14)
    torch.testing.assert_close(preprocess(grey.astype(np.uint16) * 257, 28), preprocess(grey, 28))
    torch.testing.assert_close(preprocess(grey / 255.0, 28), preprocess(grey, 28))
    with pytest.raises(UserError, match=r"outside \[0, 1\]"):
        preprocess(grey.astype(np.float32), 28)


def test_rgb_npz(tmp_path: Path) -> None:
    src = _npz(tmp_path / "rgb.npz", splits=(("train", 3), ("test", 2)), rgb=True)
    x, columns, _ = _read(embed_images(src, tmp_path / "rgb.parquet", **TINY).path)
    assert x.shape == (5, DIM) and columns["split"] == ["train"] * 3 + ["test"] * 2


def _folder(tmp_path: Path, names=("a.png", "b.png", "c.jpg", "d.png"), extra_column=True) -> Path:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    images = _images(len(names), size=24, rgb=True)
    for name, array in zip(names, images):
        Image.fromarray(array[..., 0] if name == "d.png" else array).save(folder / name)  # d is grey
    rows = ["filename,label,site,split"] if extra_column else ["file,label"]
    for i, name in enumerate(names):
        label = ["benign", "malignant"][i % 2]
        rows.append(f"{name},{label},site{i // 2},{'test' if i == 3 else 'train'}" if extra_column else f"{name},{i % 2}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_folder_with_csv_site_split_and_named_labels(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    result = embed_images(folder, tmp_path / "f.parquet", **TINY)
    x, columns, meta = _read(result.path)
    assert x.shape == (4, DIM) and x.dtype == np.float32
    assert columns["site"] == ["site0", "site0", "site1", "site1"]
    assert columns["split"] == ["train", "train", "train", "test"]
    assert columns["label"] == [0, 1, 0, 1]
    assert json.loads(meta["fedsim.class_names"]) == ["benign", "malignant"]
    # the CSV itself works as --images, and gives the same embeddings
    again = _read(embed_images(folder / "labels.csv", tmp_path / "g.parquet", **TINY).path)[0]
    assert np.array_equal(x, again)


def test_folder_minimal_csv(tmp_path: Path) -> None:
    folder = _folder(tmp_path, extra_column=False)
    _, columns, meta = _read(embed_images(folder, tmp_path / "m.parquet", **TINY).path)
    assert columns["label"] == [0, 1, 0, 1]
    assert "site" not in columns and "split" not in columns and "fedsim.class_names" not in meta


def test_missing_image_fails_before_writing(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "c.jpg").unlink()
    out = tmp_path / "out" / "x.parquet"
    with pytest.raises(UserError, match=r"c\.jpg does not exist"):
        embed_images(folder, out, **TINY)
    assert not out.exists() and not (tmp_path / "out").exists()


def test_unreadable_image_leaves_nothing_behind(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "d.png").write_bytes(b"not an image")  # found, but fails mid-run (second batch)
    out = tmp_path / "x.parquet"
    out.write_bytes(b"old")
    with pytest.raises(UserError, match=r"d\.png is not a readable image"):
        embed_images(folder, out, batch_size=2, **TINY)
    assert out.read_bytes() == b"old"
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_weights_error_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "dinov2_vits14_pretrain.pth"
    assert hub_checkpoint_path("dinov2_vits14") == expected
    with pytest.raises(UserError) as error:
        resolve_weights("dinov2_vits14")
    message = str(error.value)
    assert str(expected) in message
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth" in message
    assert "--weights" in message and "\n" not in message
    # an explicit --weights that does not exist is named too
    with pytest.raises(UserError, match="nope.pth does not exist"):
        resolve_weights("dinov2_vitb14", tmp_path / "nope.pth")
    # and the whole command fails before writing anything
    src = _npz(tmp_path / "s.npz")
    with pytest.raises(UserError, match="dinov2_vitb14_pretrain.pth"):
        embed_images(src, tmp_path / "o.parquet", encoder="dinov2_vitb14", image_size=28, progress=False)
    assert not (tmp_path / "o.parquet").exists()


def test_hub_cache_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    cached = tmp_path / "hub" / "checkpoints" / "dinov2_vits14_pretrain.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert resolve_weights("dinov2_vits14") == cached


def test_weights_file_gives_identical_outputs(tmp_path: Path) -> None:
    src = _npz(tmp_path / "s.npz")
    model = load_encoder("tiny-random", seed=7)
    weights = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), weights)
    a = _read(embed_images(src, tmp_path / "a.parquet", seed=7, **TINY).path)[0]
    b = _read(embed_images(src, tmp_path / "b.parquet", weights=weights, seed=123, **TINY).path)
    assert np.array_equal(a, b[0])
    assert json.loads(b[2]["fedsim.weights"]) == "tiny.pth"


def test_wrong_weights_file_is_a_user_error(tmp_path: Path) -> None:
    weights = tmp_path / "bad.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 384)}, weights)
    with pytest.raises(UserError, match="does not fit encoder 'tiny-random'"):
        load_encoder("tiny-random", weights)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_encoder("tiny-random", tmp_path / "junk.pth")


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros(3)}, "no '<split>_images' array"),
        ({"train_images": _images(3)}, "has 'train_images' but no 'train_labels'"),
        ({"train_images": _images(3), "train_labels": np.zeros(4, np.int64)}, "4 labels for 3 images"),
        ({"train_images": _images(3), "train_labels": np.zeros((3, 2), np.int64)}, "multi-label"),
        ({"train_images": np.zeros((3, 2, 5, 5), np.uint8), "train_labels": np.zeros(3)}, r"\(N, H, W, 3\) RGB"),
        ({"train_images": np.zeros((3, 5, 5), np.int64), "train_labels": np.zeros(3)}, "dtype int64"),
    ],
)
def test_npz_validation(tmp_path: Path, arrays: dict, match: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=match):
        open_images(tmp_path / "bad.npz")


def test_input_and_option_validation(tmp_path: Path) -> None:
    src = _npz(tmp_path / "s.npz")
    with pytest.raises(UserError, match="does not exist"):
        open_images(tmp_path / "missing.npz")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "labels.csv").write_text("name,label\na.png,0\n")
    with pytest.raises(UserError, match=r"no column 'file'.*valid columns are file \(or filename\), label"):
        open_images(tmp_path / "c")
    with pytest.raises(UserError, match="multiple of the patch size 14"):
        embed_images(src, tmp_path / "o.parquet", **{**TINY, "image_size": 30})
    with pytest.raises(UserError, match="unknown encoder 'vit-h'; valid are dinov2_vits14, dinov2_vitb14, tiny-random"):
        embed_images(src, tmp_path / "o.parquet", **{**TINY, "encoder": "vit-h"})
    with pytest.raises(UserError, match="must end in .parquet"):
        embed_images(src, tmp_path / "o.csv", **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "s.npz"]


def test_cli_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _npz(tmp_path / "s.npz")
    out = tmp_path / "cli.parquet"
    command = EmbedCommand(images=src, out=out, encoder="tiny-random", image_size=42, batch_size=5, device="cpu")
    assert command.execute() == 0
    assert f"wrote 11 embeddings of dimension {DIM} (tiny-random) to {out}" in capsys.readouterr().out
    assert _read(out)[0].shape == (11, DIM)
