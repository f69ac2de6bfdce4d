"""`isic2018`: the ISIC 2018 challenge, task 3, lesion diagnosis (Codella et al. 2019; the
images are HAM10000, Tschandl et al. 2018).

Origin: challenge.isic-archive.com/data/#2018. Expected tree (Validation and Test optional)::

    <root>/
        ISIC2018_Task3_Training_Input/     ISIC_0024306.jpg, ... ATTRIBUTION.txt, LICENSE.txt
        ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv
        ISIC2018_Task3_Validation_Input/   ISIC2018_Task3_Validation_GroundTruth/...
        ISIC2018_Task3_Test_Input/         ISIC2018_Task3_Test_GroundTruth/...

Each ground-truth CSV has the columns `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`, one-hot (`1.0` in
the image's class), `image` without `.jpg`. The official split is kept; a part that is absent
(the test labels came out after the challenge) is drawn from the training images, each lesion
in one split where the training ground truth holds `ISIC2018_Task3_Training_LesionGroupings.csv`
(columns `image,lesion_id,diagnosis_confirm_type`); without it a drawn split may put two images
of one lesion in train and test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from shpeft.data.archives import add_once, image_files, paired, read_rows
from shpeft.data.files import collect
from shpeft.data.registry import SPLITS, GroupedConfig, RawDataset, register_source, resolve_root
from shpeft.errors import ShpeftError

CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
PARTS = {"train": "Training", "val": "Validation", "test": "Test"}
SHIPPED = {"ATTRIBUTION.txt", "LICENSE.txt"}
GROUPINGS = "ISIC2018_Task3_Training_LesionGroupings.csv"


class Isic2018Config(GroupedConfig):
    """The ISIC 2018 task 3 archives, with the official split."""

    root: str = Field(min_length=1)
    """The folder holding the `ISIC2018_Task3_<part>_Input/` and `_GroundTruth/` folders."""


def part_paths(root: Path, part: str) -> tuple[Path, Path]:
    """The part's image folder and ground-truth CSV."""
    name = f"ISIC2018_Task3_{part}"
    return root / f"{name}_Input", root / f"{name}_GroundTruth" / f"{name}_GroundTruth.csv"


def diagnoses(path: Path) -> dict[str, int]:
    """Each image's class from a one-hot ground-truth file."""
    labels = {}
    for line, row in read_rows(path, ("image", *CLASSES)):
        try:
            hot = [name for name in CLASSES if float(row[name]) == 1.0]
        except (TypeError, ValueError):
            raise ShpeftError(f"{path}:{line}: the class columns must be 0.0 or 1.0") from None
        if len(hot) != 1:
            raise ShpeftError(f"{path}:{line}: needs exactly one class at 1.0, found {hot}")
        add_once(labels, row["image"], CLASSES.index(hot[0]), f"{path}:{line}")
    return labels


def lesions(root: Path, images: list[str]) -> tuple[np.ndarray, str] | None:
    """Each image's lesion from the training part's lesion groupings (HAM10000 holds several
    images of one lesion), an image outside the file its own; None without the file."""
    path = part_paths(root, "Training")[1].with_name(GROUPINGS)
    if not path.exists():
        return None
    lesion_of: dict[str, str] = {}
    for line, row in read_rows(path, ("image", "lesion_id", "diagnosis_confirm_type")):
        add_once(lesion_of, row["image"], row["lesion_id"] or row["image"], f"{path}:{line}")
    groups = np.array([lesion_of.get(image, image) for image in images])
    return groups, f"lesion_id of {GROUPINGS}"


@register_source("isic2018", Isic2018Config, raw_inputs=lambda cfg: [Path(cfg.root)])
def load_isic2018(cfg: Isic2018Config) -> RawDataset:
    """ISIC 2018 task 3 dermoscopy: seven diagnoses, official split."""
    root = resolve_root(cfg.root, "isic2018.root")
    entries, truths = [], []
    for split, part in PARTS.items():
        folder, truth = part_paths(root, part)
        if part != "Training" and not folder.exists() and not truth.exists():
            continue  # drawn from train instead
        for path, what in ((folder, "image folder"), (truth, "ground-truth file")):
            if not path.exists():
                raise ShpeftError(f"{path}: {part} {what} not found (the other one is there)")
        images = {p.stem: p for p in image_files(folder, SHIPPED)}
        for path, label in paired(images, diagnoses(truth), str(folder), str(truth)):
            entries.append((path, label, SPLITS.index(split)))
        truths.append(truth)
    groups = None if cfg.group_pattern else lesions(root, [p.stem for p, _, _ in entries])
    return collect(
        root, entries, list(CLASSES), cfg.image_size, truths, groups, cfg.group_pattern, root
    )
