"""Data sources and the prepared format, on generated files and the real MedMNIST files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import MEDMNIST, needs_medmnist
from shpeft.data.prepare import prepare
from shpeft.data.prepared import PreparedDataset
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file


def _png(path, mode="L", size=(20, 24), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        array = np.full(size[::-1], value * 257, dtype=np.uint16)
        Image.fromarray(array).save(path)
    elif mode == "P":
        image = Image.new("P", size, 1)
        image.putpalette([0, 0, 0, value, 0, 0])
        image.save(path)
    else:
        Image.new(mode, size, value if mode in ("L", "1") else (value,) * len(mode)).save(path)
    return path


def _folder(root, classes=("a", "b"), per_class=6, modes=("L", "RGB", "RGBA", "P", "I;16")):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", modes[i % len(modes)], value=60 + 100 * c)
    return root


def _medmnist_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_synthetic_prepare_is_deterministic_and_memmappable(in_tmp):
    params = {
        "source": "synthetic",
        "kind": "xray",
        "image_size": 24,
        "n_train": 30,
        "n_val": 12,
        "n_test": 12,
        "seed": 5,
    }
    first = prepare("a", params, in_tmp / "a")
    second = prepare("b", params, in_tmp / "b")
    assert first["arrays_sha256"] == second["arrays_sha256"]
    data = PreparedDataset.load(in_tmp / "a")
    assert isinstance(data.images, np.memmap) and data.images.dtype == np.uint8
    assert data.images.shape == (54, 24, 24, 3)
    assert data.manifest["sizes"] == {"train": 30, "val": 12, "test": 12}
    assert sum(data.manifest["counts"]["train"].values()) == 30


def test_imagefolder_converts_every_mode_and_splits_stratified(in_tmp):
    root = _folder(in_tmp / "imgs")
    manifest = prepare(
        "f",
        {
            "source": "imagefolder",
            "root": str(root),
            "image_size": 16,
            "val_fraction": 0.2,
            "test_fraction": 0.2,
        },
        in_tmp / "out",
    )
    data = PreparedDataset.load(in_tmp / "out")
    assert data.images.shape == (12, 16, 16, 3)
    assert manifest["class_names"] == ["a", "b"]
    assert manifest["split_origin"].startswith("stratified")
    assert all(min(c.values()) >= 1 for c in manifest["counts"].values())
    assert len(manifest["source_files"]) == 12
    assert manifest["source_files"]["a/0.png"] == sha256_file(root / "a" / "0.png")
    # Files a/0..a/4 are L, RGB, RGBA, P and I;16 at value 60 (entries keep sorted file order).
    pixel = data.images[:5, 8, 8].astype(int)
    assert pixel[0].tolist() == [60, 60, 60]  # grayscale replicated over R, G, B
    assert pixel[1].tolist() == [60, 60, 60]
    assert pixel[2].tolist() == [14, 14, 14]  # RGBA, alpha 60/255, composited over black
    assert pixel[3].tolist() == [60, 0, 0]  # palette through its palette
    assert pixel[4].tolist() == [60, 60, 60]  # 16-bit mapped linearly from 0..65535


def test_imagefolder_official_split_level_and_val_carved_from_train(in_tmp):
    root = in_tmp / "imgs"
    _folder(root / "train", per_class=8, modes=("L",))
    _folder(root / "test", per_class=3, modes=("RGB",))
    manifest = prepare(
        "f", {"source": "imagefolder", "root": str(root), "image_size": 16}, in_tmp / "out"
    )
    assert manifest["sizes"]["test"] == 6
    assert (
        manifest["sizes"]["val"] >= 2
        and manifest["sizes"]["train"] + manifest["sizes"]["val"] == 16
    )
    assert "val drawn from train" in manifest["split_origin"]


def test_csv_manifest(in_tmp):
    root = _folder(in_tmp / "imgs", per_class=4)
    rows = ["path,label,split"] + [
        f"{c}/{i}.png,{c},{['train', 'train', 'val', 'test'][i]}" for c in "ab" for i in range(4)
    ]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    manifest = prepare(
        "c",
        {"source": "csv", "root": str(root), "manifest": "labels.csv", "image_size": 16},
        in_tmp / "out",
    )
    assert manifest["sizes"] == {"train": 4, "val": 2, "test": 2}
    assert "labels.csv" in manifest["source_files"]


@pytest.mark.parametrize("escape", ["../outside.png", "/etc/passwd", "link.png"])
def test_csv_paths_may_not_leave_the_root(in_tmp, escape):
    root = _folder(in_tmp / "imgs", per_class=4)
    _png(in_tmp / "outside.png")
    (root / "link.png").symlink_to(in_tmp / "outside.png")
    (root / "labels.csv").write_text(f"path,label\na/0.png,a\n{escape},b\n")
    with pytest.raises(
        ShpeftError, match="leaves the data root|absolute path|outside the data root"
    ):
        prepare(
            "c",
            {"source": "csv", "root": str(root), "manifest": "labels.csv", "image_size": 16},
            in_tmp / "out",
        )
    assert not (in_tmp / "out").exists()


@needs_medmnist
@pytest.mark.parametrize(("size", "shape"), [(28, (780, 32, 32, 3)), (64, (780, 32, 32, 3))])
def test_medmnist_real_breastmnist(in_tmp, size, shape):
    manifest = prepare(
        "breast",
        {
            "source": "medmnist",
            "name": "breastmnist",
            "root": str(MEDMNIST),
            "size": size,
            "image_size": 32,
        },
        in_tmp / "out",
    )
    assert manifest["class_names"] == ["malignant", "normal, benign"]
    assert manifest["sizes"] == {"train": 546, "val": 78, "test": 156}
    assert manifest["counts"]["test"] == {"malignant": 42, "normal, benign": 114}
    assert manifest["split_origin"] == "official"
    name = "breastmnist.npz" if size == 28 else "breastmnist_64.npz"
    assert manifest["source_files"] == {name: sha256_file(MEDMNIST / name)}
    assert PreparedDataset.load(in_tmp / "out").images.shape == shape


@needs_medmnist
def test_medmnist_real_pneumoniamnist(in_tmp):
    manifest = prepare(
        "pneu",
        {"source": "medmnist", "name": "pneumoniamnist", "root": str(MEDMNIST), "image_size": 28},
        in_tmp / "out",
    )
    assert manifest["sizes"] == {"train": 4708, "val": 524, "test": 624}
    assert manifest["counts"]["train"] == {"normal": 1214, "pneumonia": 3494}


def _medmnist(root, **extra):
    return {
        "source": "medmnist",
        "name": "breastmnist",
        "root": str(root),
        "image_size": 28,
        **extra,
    }


def _bad_inputs(tmp):
    """(params, expected message) pairs; each must stop with a clear message naming the culprit."""
    cases = {}
    cases["missing npz"] = (_medmnist(tmp / "none"), "breastmnist.npz: MedMNIST file not found")
    (tmp / "trunc").mkdir()
    good = _medmnist_npz(tmp / "good.npz")
    (tmp / "trunc" / "breastmnist.npz").write_bytes(good.read_bytes()[:500])
    cases["truncated npz"] = (_medmnist(tmp / "trunc"), "corrupt or truncated npz")
    (tmp / "nokey").mkdir()
    _medmnist_npz(tmp / "nokey" / "breastmnist.npz", val_labels=None)
    cases["missing key"] = (_medmnist(tmp / "nokey"), "missing array(s) val_labels")
    (tmp / "range").mkdir()
    _medmnist_npz(tmp / "range" / "breastmnist.npz", test_labels=np.full((6, 1), 7, np.uint8))
    cases["label out of range"] = (_medmnist(tmp / "range"), "label 7 at index")
    (tmp / "lack").mkdir()
    _medmnist_npz(tmp / "lack" / "breastmnist.npz", val_labels=np.zeros((6, 1), np.uint8))
    cases["split lacks a class"] = (_medmnist(tmp / "lack"), "split 'val' has no example of class")
    folder = _folder(tmp / "notimg", modes=("L",))
    (folder / "a" / "fake.png").write_text("not an image")
    cases["not an image"] = (
        {"source": "imagefolder", "root": str(folder), "image_size": 16},
        "fake.png: not an image file",
    )
    folder = _folder(tmp / "truncpng", modes=("RGB",))
    data = (folder / "b" / "0.png").read_bytes()
    (folder / "b" / "0.png").write_bytes(data[: len(data) // 2])
    cases["truncated png"] = (
        {"source": "imagefolder", "root": str(folder), "image_size": 16},
        "0.png: corrupt or truncated image",
    )
    folder = _folder(tmp / "empty", modes=("L",))
    (folder / "c").mkdir()
    cases["empty class"] = (
        {"source": "imagefolder", "root": str(folder), "image_size": 16},
        "class folder holds no image files",
    )
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "missing npz",
        "truncated npz",
        "missing key",
        "label out of range",
        "split lacks a class",
        "not an image",
        "truncated png",
        "empty class",
    ],
)
def test_bad_inputs_stop_with_one_message_and_no_output(in_tmp, case):
    params, expected = _bad_inputs(in_tmp)[case]
    with pytest.raises(ShpeftError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        prepare("bad", params, in_tmp / "results" / "data" / "bad")
    parent = in_tmp / "results" / "data"
    assert not parent.exists() or list(parent.iterdir()) == []


def test_decompression_bomb_refused(in_tmp, monkeypatch):
    import shpeft.data.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    folder = _folder(in_tmp / "bomb", modes=("L",))
    with pytest.raises(ShpeftError, match="refused, more than 100 pixels"):
        prepare(
            "bomb", {"source": "imagefolder", "root": str(folder), "image_size": 16}, in_tmp / "o"
        )


def test_manifest_is_json_with_counts(in_tmp):
    prepare(
        "s",
        {
            "source": "synthetic",
            "kind": "dermoscopy",
            "image_size": 16,
            "n_train": 9,
            "n_val": 6,
            "n_test": 6,
        },
        in_tmp / "s",
    )
    manifest = json.loads((in_tmp / "s" / "manifest.json").read_text())
    assert manifest["class_names"] == ["nevus", "melanoma", "keratosis"]
    assert manifest["image_shape"] == [16, 16, 3]
