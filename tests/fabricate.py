"""Dataset trees fabricated as the official archives unpack (a few tiny images per class, named
as there, masks and stray text files included); each returns the preset's params entry."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from shpeft.data.kvasir import CLASSES as KVASIR

_SEEN = iter(range(1, 1_000_000))


def image(path: Path, fmt: str | None = None) -> Path:
    """A tiny image whose pixels no other test image shares (so no accidental duplicates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(next(_SEEN))
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), np.uint8)).save(path, format=fmt)
    return path


def busi(root: Path, per_class: int = 5) -> dict:
    for name in ("benign", "malignant", "normal"):
        for i in range(1, per_class + 1):
            image(root / name / f"{name} ({i}).png")
            image(root / name / f"{name} ({i})_mask.png", "PNG")
        image(root / name / f"{name} (1)_mask_1.png", "PNG")
        image(root / name / f"{name} (1)_mask_2.png", "PNG")
    return {"source": "busi", "root": str(root)}


LONG = "2020.03.22.20040782-p25-1542%0-" + "x" * 110 + "-p6-52%0.png"  # 150 characters


def covid_ct(root: Path, zipped: bool = True) -> dict:
    names = {
        "CT_COVID": [LONG, *(f"2020.01.24.919183-p27-{i}%1.png" for i in range(5))],
        "CT_NonCOVID": ["0.jpg", "1%0.jpg", "12.png", "13%2.png", "20.jpg", "21.png"],
    }
    images = root / "Images-processed"
    for folder, files in names.items():
        for name in files:
            image(images / folder / name, "JPEG" if name.endswith(".jpg") else "PNG")
        label = folder.removeprefix("CT_")
        for split, part in (("train", files[:2]), ("val", files[2:4]), ("test", files[4:])):
            listing = root / "Data-split" / label / f"{split}{folder}.txt"
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text("".join(f"{name}\r\n" for name in part))
    if zipped:  # as the repository ships them: CT_COVID.zip holding CT_COVID/<name>
        folder = images / "CT_COVID"
        with zipfile.ZipFile(images / "CT_COVID.zip", "w") as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, f"CT_COVID/{path.name}")
            archive.writestr("__MACOSX/CT_COVID/._x.png", b"resource fork")
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    return {"source": "covid-ct", "root": str(root)}


def chaoyang(root: Path) -> dict:
    for part, count in (("train", 12), ("test", 4)):
        records = []
        for i in range(count):
            name = f"{part}/5359{i:02d}-IMG009x0{i:02d}-{i % 4}.JPG"  # upper-case, as shipped
            image(root / name, "JPEG")
            label = i % 4
            records.append(
                {"name": name, "label": label, "label_A": label, "label_B": (label + i) % 4}
            )
        (root / f"{part}.json").write_text(json.dumps(records))
    return {"source": "chaoyang", "root": str(root), "val_fraction": 0.25}


ISIC = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


def isic2018(root: Path, parts=("Training", "Validation"), per_class: int = 4) -> dict:
    number = iter(range(24306, 30000))
    for part in parts:
        folder = root / f"ISIC2018_Task3_{part}_Input"
        truth = (
            root / f"ISIC2018_Task3_{part}_GroundTruth" / f"ISIC2018_Task3_{part}_GroundTruth.csv"
        )
        truth.parent.mkdir(parents=True)
        (folder / "ATTRIBUTION.txt").parent.mkdir(parents=True)
        (folder / "ATTRIBUTION.txt").write_text("ISIC archive")
        (folder / "LICENSE.txt").write_text("CC-BY-NC")
        rows = []
        for label in range(len(ISIC)):
            for _ in range(per_class if part == "Training" else 1):
                name = f"ISIC_00{next(number)}"
                image(folder / f"{name}.jpg", "JPEG")
                rows.append([name, *("1.0" if c == label else "0.0" for c in range(len(ISIC)))])
        with open(truth, "w", newline="") as handle:
            csv.writer(handle).writerows([["image", *ISIC], *rows])
    return {"source": "isic2018", "root": str(root), "test_fraction": 0.25}


def kvasir(root: Path) -> dict:
    for name in KVASIR:
        for i in range(4):
            image(root / name / f"0a{i}f1d2c-{name[:3]}-{i}.jpg", "JPEG")
    return {"source": "kvasir", "root": str(root), "test_fraction": 0.25}


def aptos2019(root: Path) -> dict:
    rows = [["id_code", "diagnosis"]]
    for i in range(20):
        code = f"{i:03x}c4b5a8e7f"
        image(root / "train_images" / f"{code}.png")
        rows.append([code, str(i % 5)])
    image(root / "test_images" / "unlabelled.png")
    (root / "test.csv").write_text("id_code\nunlabelled\n")
    with open(root / "train.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return {"source": "aptos2019", "root": str(root), "val_fraction": 0.2, "test_fraction": 0.2}


#: Each preset's fabricator, by source name.
TREES = {
    "busi": busi,
    "covid-ct": covid_ct,
    "chaoyang": chaoyang,
    "isic2018": isic2018,
    "kvasir": kvasir,
    "aptos2019": aptos2019,
}
