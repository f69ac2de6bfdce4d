"""`aptos2019`: the APTOS 2019 blindness detection dataset (diabetic retinopathy grades, Asia
Pacific Tele-Ophthalmology Society, Kaggle 2019).

Origin: kaggle.com/competitions/aptos2019-blindness-detection. Expected tree::

    <root>/
        train.csv        id_code,diagnosis   (3,662 rows; diagnosis 0..4)
        train_images/    <id_code>.png
        test.csv  test_images/  sample_submission.csv   (not read: the test set has no labels)

Grades: 0 no DR, 1 mild, 2 moderate, 3 severe, 4 proliferative DR. The test set's labels were
never published, so train, validation and test are all drawn from `train.csv`, stratified and
seeded.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shpeft.data.archives import add_once, image_files, paired, read_rows, require
from shpeft.data.files import collect
from shpeft.data.registry import (
    UNASSIGNED,
    GroupedConfig,
    RawDataset,
    register_source,
    resolve_root,
)
from shpeft.errors import ShpeftError

CLASSES = ("no DR", "mild", "moderate", "severe", "proliferative DR")


class Aptos2019Config(GroupedConfig):
    """The APTOS 2019 fundus archive (its labelled training set)."""

    root: str = Field(min_length=1)
    """The folder holding `train.csv` and `train_images/`."""


def grades(path: Path) -> dict[str, int]:
    """Each image's grade from `train.csv`."""
    labels = {}
    for line, row in read_rows(path, ("id_code", "diagnosis")):
        grade = row["diagnosis"].strip()
        if grade not in {str(i) for i in range(len(CLASSES))}:
            raise ShpeftError(f"{path}:{line}: diagnosis {grade!r} is not a grade 0..4")
        add_once(labels, row["id_code"], int(grade), f"{path}:{line}")
    return labels


def _read(cfg: Aptos2019Config) -> list[Path]:
    return [Path(cfg.root) / "train.csv", Path(cfg.root) / "train_images"]


@register_source("aptos2019", Aptos2019Config, raw_inputs=_read)
def load_aptos2019(cfg: Aptos2019Config) -> RawDataset:
    """APTOS 2019 fundus photographs: five retinopathy grades, split drawn."""
    root = resolve_root(cfg.root, "aptos2019.root")
    table, folder = root / "train.csv", require(root / "train_images", "image folder")
    images = {p.stem: p for p in image_files(folder)}
    entries = [
        (path, label, UNASSIGNED)
        for path, label in paired(images, grades(table), str(folder), str(table))
    ]
    return collect(root, entries, list(CLASSES), cfg.image_size, [table], pattern=cfg.group_pattern)
