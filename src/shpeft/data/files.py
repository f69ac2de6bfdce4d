"""Shared by the file-based sources: path safety, decoding a list of files, hashing them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shpeft.data.images import read_image
from shpeft.data.registry import UNASSIGNED, RawDataset
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file


def inside_root(root: Path, relative: str, origin: str) -> Path:
    """Resolve `relative` under `root`, refusing absolute paths, `..` and links leaving the root."""
    if Path(relative).is_absolute():
        raise ShpeftError(
            f"{origin}: absolute path '{relative}' refused; paths are relative to {root}"
        )
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ShpeftError(f"{origin}: path '{relative}' leaves the data root {root}")
    if not path.is_file():
        raise ShpeftError(f"{origin}: file '{relative}' not found under {root}")
    return path


def collect(
    root: Path,
    entries: Sequence[tuple[Path, int, int]],
    class_names: list[str],
    image_size: int,
    extra_files: Sequence[Path] = (),
) -> RawDataset:
    """Decode `(path, label, split)` entries into a RawDataset, hashing every file read.

    Messages about the dataset as a whole name the first of `extra_files` (a manifest), else `root`.
    """
    for path, _, _ in entries:
        if not path.resolve().is_relative_to(root):
            raise ShpeftError(f"{path}: refused, it resolves outside the data root {root}")
    images = np.stack([read_image(path, image_size) for path, _, _ in entries])
    hashes = {
        os.path.relpath(p, root): sha256_file(p) for p in [*extra_files, *(e[0] for e in entries)]
    }
    splits = {split for _, _, split in entries}
    return RawDataset(
        images=images,
        labels=np.array([label for _, label, _ in entries], dtype=np.int64),
        class_names=class_names,
        split=np.array([split for _, _, split in entries], dtype=np.int8),
        source_files=hashes,
        split_origin="official" if UNASSIGNED not in splits else "stratified",
        origin=str(extra_files[0] if extra_files else root),
    )
