"""Shared by the file-based sources: path safety, decoding a list of files, hashing them."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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


def decoding_threads() -> int:
    """The job's threads: Snakemake sets OMP_NUM_THREADS to a rule's `threads`."""
    return max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))


def pattern_groups(paths: Sequence[Path], root: Path, pattern: str, origin: str) -> np.ndarray:
    """Each image's group: the first group of `pattern` searched in its path under `root`."""
    groups = []
    for path in paths:
        relative = os.path.relpath(path, root)
        found = re.search(pattern, relative)
        if found is None or not found.group(1):
            raise ShpeftError(f"{origin}: group_pattern {pattern!r} names no group in '{relative}'")
        groups.append(found.group(1))
    return np.array(groups)


def collect(
    root: Path,
    entries: Sequence[tuple[Path, int, int]],
    class_names: list[str],
    image_size: int,
    extra_files: Sequence[Path] = (),
    groups: tuple[np.ndarray, str] | None = None,
) -> RawDataset:
    """Decode `(path, label, split)` entries into a RawDataset, hashing every file read.

    Messages about the dataset as a whole name the first of `extra_files` (a manifest), else `root`.
    `groups` are each entry's patient or lesion, with how they were read.
    """
    for path, _, _ in entries:
        if not path.resolve().is_relative_to(root):
            raise ShpeftError(f"{path}: refused, it resolves outside the data root {root}")
    with ThreadPoolExecutor(decoding_threads()) as pool:  # Pillow decodes outside the GIL
        images = np.stack(list(pool.map(lambda e: read_image(e[0], image_size), entries)))
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
        groups=None if groups is None else groups[0],
        grouping=None if groups is None else groups[1],
    )
