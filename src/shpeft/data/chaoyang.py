"""`chaoyang`: the Chaoyang colorectal histopathology dataset (Zhu et al., ICCV 2021).

Origin: the `chaoyang-data` archive linked from github.com/bupt-ai-cz/HSA-NRL. Expected tree::

    chaoyang-data/                   <- root
        train/  535940-IMG009x024-2.JPG, ... (4,021 images)
        test/   ... (2,139 images)
        train.json  test.json

Each JSON file is a list of records `{"name": "train/535940-IMG009x024-2.JPG", "label": 0}`,
`name` relative to the root, `label` 0 normal, 1 serrated, 2 adenocarcinoma, 3 adenoma; records
may carry each pathologist's label (`label_A`, `label_B`, `label_C`), which the manifest keeps
under `annotations`. The official split is train and test: validation is drawn from train.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from shpeft.data.archives import image_files, paired, read_lines, require
from shpeft.data.files import collect, inside_root
from shpeft.data.registry import SPLITS, GroupedConfig, RawDataset, register_source, resolve_root
from shpeft.errors import ShpeftError

CLASSES = ("normal", "serrated", "adenocarcinoma", "adenoma")
PARTS = ("train", "test")
ANNOTATORS = ("label_A", "label_B", "label_C")


class ChaoyangConfig(GroupedConfig):
    """The Chaoyang colorectal histopathology archive, official train and test."""

    root: str = Field(min_length=1)
    """The `chaoyang-data/` folder, holding `train/`, `test/`, `train.json` and `test.json`."""


def records(root: Path, part: str) -> dict[str, dict]:
    """The records of `<part>.json` by image path (relative to the root), checked."""
    listing = require(root / f"{part}.json", "label file")
    try:
        data = json.loads("\n".join(read_lines(listing)))
    except json.JSONDecodeError as exc:
        raise ShpeftError(f"{listing}: not a readable JSON file ({exc})") from None
    if not isinstance(data, list):
        raise ShpeftError(f"{listing}: expected a list of records, found {type(data).__name__}")
    found: dict[str, dict] = {}
    for index, record in enumerate(data):
        where = f"{listing}: record {index}"
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            raise ShpeftError(f"{where}: needs a 'name' (the image path relative to {root})")
        for key in ("label", *ANNOTATORS):
            value = record.get(key)
            valid = type(value) is int and 0 <= value < len(CLASSES)  # not True, not 2.0
            if (key == "label" or value is not None) and not valid:
                raise ShpeftError(f"{where}: '{key}' is {value!r}, not 0..{len(CLASSES) - 1}")
        path = inside_root(root, record["name"], where)
        key = path.relative_to(root).as_posix()
        if key in found:
            raise ShpeftError(f"{where}: '{record['name']}' is listed twice")
        found[key] = record
    return found


@register_source("chaoyang", ChaoyangConfig, raw_inputs=lambda cfg: [Path(cfg.root)])
def load_chaoyang(cfg: ChaoyangConfig) -> RawDataset:
    """The Chaoyang histopathology archive: four colorectal classes, official train/test."""
    root = resolve_root(cfg.root, "chaoyang.root")
    entries, labelled = [], []
    for part in PARTS:
        folder = require(root / part, "image folder")
        images = {p.relative_to(root).as_posix(): p for p in image_files(folder)}
        listed = records(root, part)
        for path, record in paired(images, listed, str(folder), str(root / f"{part}.json")):
            entries.append((path, record["label"], SPLITS.index(part)))
            labelled.append(record)
    listings = [root / f"{part}.json" for part in PARTS]
    raw = collect(root, entries, list(CLASSES), cfg.image_size, listings, pattern=cfg.group_pattern)
    for key in ANNOTATORS:
        if any(key in record for record in labelled):
            raw.annotations[key] = [record.get(key) for record in labelled]
    return raw
