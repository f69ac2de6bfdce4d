"""A CSV manifest of `path,label[,split]`, with paths relative to a data root."""

from __future__ import annotations

import csv

from pydantic import Field

from shpeft.data.files import collect, inside_root
from shpeft.data.registry import (
    SPLITS,
    UNASSIGNED,
    DatasetConfig,
    RawDataset,
    register_source,
    resolve_root,
)
from shpeft.errors import ShpeftError


class CsvConfig(DatasetConfig):
    """A CSV manifest of image paths and labels."""

    root: str = Field(min_length=1)
    """The folder the manifest's paths are relative to."""
    manifest: str = Field("labels.csv", min_length=1)
    """The manifest file, relative to `root` (or absolute), with columns path,label[,split]."""


@register_source("csv", CsvConfig)
def load_csv(cfg: CsvConfig) -> RawDataset:
    """A CSV manifest of `path,label[,split]` rows, paths relative to `root`."""
    root = resolve_root(cfg.root, "csv.root")
    manifest = root / cfg.manifest
    if not manifest.is_file():
        raise ShpeftError(f"{manifest}: CSV manifest not found")
    try:
        with open(manifest, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ShpeftError(f"{manifest}: not a readable UTF-8 CSV file ({exc})") from None
    if not rows or not {"path", "label"} <= set(rows[0][1]):
        raise ShpeftError(f"{manifest}: needs a header with columns path,label[,split]")
    for line, row in rows:
        if not row["path"] or not row["label"]:
            raise ShpeftError(f"{manifest}:{line}: the row needs a path and a label")
    class_names = sorted({row["label"] for _, row in rows})
    entries = []
    for line, row in rows:
        split = (row.get("split") or "").strip()
        if split and split not in SPLITS:
            raise ShpeftError(f"{manifest}:{line}: split '{split}' is not one of {SPLITS}")
        path = inside_root(root, row["path"], f"{manifest}:{line}")
        index = SPLITS.index(split) if split else UNASSIGNED
        entries.append((path, class_names.index(row["label"]), index))
    return collect(root, entries, class_names, cfg.image_size, extra_files=[manifest])
