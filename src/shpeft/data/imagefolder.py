"""A folder of class subfolders, `root/<class>/*`, optionally under `root/{train,val,test}/`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shpeft.data.files import collect
from shpeft.data.images import EXTENSIONS
from shpeft.data.registry import (
    SPLITS,
    UNASSIGNED,
    GroupedConfig,
    RawDataset,
    register_source,
    resolve_root,
)
from shpeft.errors import ShpeftError


class ImageFolderConfig(GroupedConfig):
    """A folder of class subfolders."""

    root: str = Field(min_length=1)
    """The folder holding `<class>/` (or `{train,val,test}/<class>/`) subfolders of images."""


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise ShpeftError(f"{folder}: class folder holds no image files")
    return files


@register_source("imagefolder", ImageFolderConfig, raw_inputs=lambda cfg: [Path(cfg.root)])
def load_imagefolder(cfg: ImageFolderConfig) -> RawDataset:
    """Images in `root/<class>/`, or in `root/{train,val,test}/<class>/` for an official split."""
    root = resolve_root(cfg.root, "imagefolder.root")
    top = {p.name for p in _class_dirs(root)}
    split_level = bool(top) and top <= set(SPLITS) and "train" in top
    groups = (
        [(SPLITS.index(s), root / s) for s in SPLITS if s in top]
        if split_level
        else [(UNASSIGNED, root)]
    )
    class_names = sorted({d.name for _, folder in groups for d in _class_dirs(folder)})
    if not class_names:
        raise ShpeftError(f"{root}: no class subfolders found")
    entries = [
        (path, class_names.index(class_dir.name), split)
        for split, folder in groups
        for class_dir in _class_dirs(folder)
        for path in _images_in(class_dir)
    ]
    return collect(root, entries, class_names, cfg.image_size, pattern=cfg.group_pattern)
