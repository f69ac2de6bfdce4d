"""Data sources and the prepared format, on generated files and the real MedMNIST files.

Malformed data (corrupt npz or images, bombs, paths leaving the root, ...) is in
test_hostile_inputs.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MEDMNIST, needs_medmnist
from helpers import dataset, image_folder, png
from shpeft.data.prepared import PreparedDataset
from shpeft.data.prepared import prepare_dataset as prepare_step
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file


def prepare(name, entry, out):
    return prepare_step(name, dataset(entry), out)


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
    root = image_folder(in_tmp / "imgs")
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
    image_folder(root / "train", per_class=8, modes=("L",))
    image_folder(root / "test", per_class=3, modes=("RGB",))
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
    root = image_folder(in_tmp / "imgs", per_class=4)
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


def test_csv_manifest_may_lie_outside_the_root(in_tmp):
    root = image_folder(in_tmp / "imgs", per_class=4)
    rows = ["path,label"] + [f"{c}/{i}.png,{c}" for c in "ab" for i in range(4)]
    (in_tmp / "labels.csv").write_text("\n".join(rows) + "\n")
    manifest = prepare(
        "c",
        {
            "source": "csv",
            "root": str(root),
            "manifest": str(in_tmp / "labels.csv"),
            "image_size": 16,
        },
        in_tmp / "out",
    )
    assert manifest["source_files"]["../labels.csv"] == sha256_file(in_tmp / "labels.csv")


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


def _patients(root, per_class=10, images=3):
    """Class folders of images named `P<patient>_<i>.png`, several images per patient."""
    for c, name in enumerate(("benign", "malignant")):
        for patient in range(per_class):
            for i in range(images):
                png(root / name / f"P{c}{patient:02d}_{i}.png", value=40 + 100 * c + i)
    return root


def _groups_per_split(out, pattern):
    import re

    data = PreparedDataset.load(out)
    files = [f for f in data.manifest["source_files"] if f.endswith(".png")]  # image order
    patients = np.array([re.search(pattern, f)[1] for f in files])
    return {p: set(data.split[patients == p].tolist()) for p in np.unique(patients)}, data


def test_a_drawn_split_keeps_each_patient_in_one_split(in_tmp):
    root = _patients(in_tmp / "imgs")
    pattern = r"(P\d+)_"
    entry = {"source": "imagefolder", "root": str(root), "image_size": 16, "group_pattern": pattern}
    manifest = prepare("p", {**entry, "val_fraction": 0.2, "test_fraction": 0.2}, in_tmp / "out")
    splits, data = _groups_per_split(in_tmp / "out", pattern)
    assert all(len(found) == 1 for found in splits.values())  # no patient crosses splits
    assert manifest["grouping"] == f"pattern {pattern}"
    assert sum(manifest["groups_per_split"].values()) == 20
    assert min(manifest["groups_per_split"].values()) >= 2
    assert manifest["split_origin"].startswith("stratified by group (pattern")
    assert all(
        min(c.values()) >= 1 for c in manifest["counts"].values()
    )  # every class, every split


def test_a_csv_group_column_and_its_mistakes(in_tmp):
    root = _patients(in_tmp / "imgs")
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    rows = [f"{f},{f.parent},{f.name.split('_')[0]}" for f in files]
    (root / "labels.csv").write_text("path,label,patient\n" + "\n".join(rows) + "\n")
    entry = {"source": "csv", "root": str(root), "image_size": 16, "group_column": "patient"}
    manifest = prepare("c", entry, in_tmp / "out")
    assert manifest["grouping"] == "column patient"
    splits, _ = _groups_per_split(in_tmp / "out", r"(P\d+)_")
    assert all(len(found) == 1 for found in splits.values())
    with pytest.raises(ShpeftError, match=r"labels\.csv: no column 'subject'"):
        prepare("c", {**entry, "group_column": "subject"}, in_tmp / "out2")
    folder = {"source": "imagefolder", "root": str(root), "image_size": 16}
    with pytest.raises(ShpeftError, match=r"group_pattern '\(Q\\\\d\+\)' names no group in"):
        prepare("f", {**folder, "group_pattern": r"(Q\d+)"}, in_tmp / "out3")


def test_an_official_split_that_crosses_a_patient_is_refused(in_tmp):
    root = in_tmp / "imgs"
    for split in ("train", "val", "test"):
        _patients(root / split, per_class=2, images=1)
    entry = {"source": "imagefolder", "root": str(root), "image_size": 16}
    with pytest.raises(ShpeftError, match=r"group 'P000' \(pattern .*\) is in test and train"):
        prepare("o", {**entry, "group_pattern": r"(P\d+)_"}, in_tmp / "out")


def test_streamed_images_are_the_bytes_numpy_saves_in_any_chunking(in_tmp, monkeypatch):
    from shpeft.data import stream

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 8, 8, 3), np.uint8)
    np.save(in_tmp / "saved.npy", images)
    monkeypatch.setattr(stream, "CHUNK_BYTES", 5 * 8 * 8 * 3)  # chunks of 5, the last of 2
    digests = stream.write_images(stream.ArrayImages(images, "test"), in_tmp / "streamed.npy")
    assert (in_tmp / "streamed.npy").read_bytes() == (in_tmp / "saved.npy").read_bytes()
    assert len(set(digests)) == 37


@needs_medmnist
def test_medmnist_streamed_in_small_chunks_matches_one_chunk(in_tmp, monkeypatch):
    from shpeft.data import stream

    entry = {"source": "medmnist", "name": "breastmnist", "root": str(MEDMNIST), "size": 64}
    whole = prepare("b", {**entry, "image_size": 32}, in_tmp / "whole")
    monkeypatch.setattr(stream, "CHUNK_BYTES", 7 * 64 * 64)  # 7 source rows a chunk
    chunked = prepare("b", {**entry, "image_size": 32}, in_tmp / "chunked")
    assert chunked["arrays_sha256"] == whole["arrays_sha256"]


@needs_medmnist
def test_the_leakage_guard_on_breastmnist_finds_its_cross_split_duplicate(in_tmp):
    entry = {"source": "medmnist", "name": "breastmnist", "root": str(MEDMNIST), "image_size": 28}
    report = prepare("b", entry, in_tmp / "out")["duplicates"]
    assert report["sets_across_splits"] == 1 and report["sets_with_differing_labels"] == 1
    assert report["across_splits"] == [
        {
            "images": ["breastmnist.npz:train_images[115]", "breastmnist.npz:test_images[76]"],
            "splits": ["train", "test"],
        }
    ]
    with pytest.raises(ShpeftError, match=r"breastmnist\.npz: dataset 'b': 1 set\(s\) of ident"):
        prepare("b", {**entry, "cross_split_duplicates": "refuse"}, in_tmp / "refused")
    assert not (in_tmp / "refused").exists()
