"""A CSV manifest of `path,label[,split]`, with paths relative to a data root."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pydantic import Field

from shpeft.data.files import collect, inside_root
from shpeft.data.registry import (
    SPLITS,
    UNASSIGNED,
    GroupedConfig,
    RawDataset,
    register_source,
    resolve_root,
)
from shpeft.errors import ShpeftError


class CsvConfig(GroupedConfig):
    """A CSV manifest of image paths and labels."""

    group_column: str | None = None
    """A column naming each image's patient or lesion: a drawn split keeps each group in one
    split (instead of `group_pattern`)."""

    root: str = Field(min_length=1)
    """The folder the manifest's paths are relative to."""
    manifest: str = Field("labels.csv", min_length=1)
    """The manifest file, relative to `root` (or absolute), with columns path,label[,split]."""


def _read(cfg: CsvConfig) -> list[Path]:
    """The image root, and the manifest where it lies outside it."""
    root, manifest = Path(cfg.root), Path(cfg.root) / cfg.manifest
    return [root] if manifest.resolve().is_relative_to(root.resolve()) else [root, manifest]


@register_source("csv", CsvConfig, raw_inputs=_read)
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
    groups = None
    if cfg.group_column:
        if cfg.group_column not in rows[0][1]:
            raise ShpeftError(f"{manifest}: no column '{cfg.group_column}' (csv.group_column)")
        values = [(row[cfg.group_column] or "").strip() for _, row in rows]
        empty = [line for (line, _), value in zip(rows, values, strict=True) if not value]
        if empty:
            raise ShpeftError(f"{manifest}:{empty[0]}: no {cfg.group_column} for this image")
        groups = np.array(values), f"column {cfg.group_column}"
    return collect(
        root, entries, class_names, cfg.image_size, [manifest], groups, cfg.group_pattern
    )
