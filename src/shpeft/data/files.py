"""Shared by the file-based sources: path safety, groups, decoding a list of files, hashing them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from shpeft.data.images import ImageFile, ZipMember, read_image
from shpeft.data.registry import UNASSIGNED, RawDataset
from shpeft.data.stream import ImageStream, chunk_length
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


def _archive(path: ImageFile) -> Path:
    return path.archive if isinstance(path, ZipMember) else path


class FileImages(ImageStream):
    """Image files (or zip members) decoded a chunk at a time on the job's threads."""

    def __init__(self, paths: Sequence[ImageFile], image_size: int, root: Path) -> None:
        super().__init__(len(paths), image_size)
        self.paths, self.root = list(paths), root

    def chunks(self) -> Iterator[np.ndarray]:
        step, size = chunk_length(self.image_size), self.image_size
        with ThreadPoolExecutor(decoding_threads()) as pool:  # Pillow decodes outside the GIL
            for start in range(0, self.count, step):
                batch = self.paths[start : start + step]
                yield np.stack(list(pool.map(lambda path: read_image(path, size), batch)))

    def name(self, index: int) -> str:
        return os.path.relpath(str(self.paths[index]), self.root)


def collect(
    root: Path,
    entries: Sequence[tuple[ImageFile, int, int]],
    class_names: list[str],
    image_size: int,
    extra_files: Sequence[Path] = (),
    groups: tuple[np.ndarray, str] | None = None,
    pattern: str | None = None,
    origin: Path | None = None,
) -> RawDataset:
    """The RawDataset of `(file, label, split)` entries, hashing every file (or archive) read;
    the images are decoded as they are written.

    Messages about the dataset as a whole name `origin`, else the first of `extra_files` (a
    manifest), else `root`.
    `groups` are each entry's patient or lesion, with how they were read; else `pattern` (a
    `group_pattern`) reads them from the paths.
    """
    origin = str(origin or (extra_files[0] if extra_files else root))
    if groups is None and pattern:
        paths = [p.as_path() if isinstance(p, ZipMember) else p for p, _, _ in entries]
        groups = pattern_groups(paths, root, pattern, origin), f"pattern {pattern}"
    images = list(dict.fromkeys(_archive(path) for path, _, _ in entries))
    for path in images:
        if not path.resolve().is_relative_to(root):
            raise ShpeftError(f"{path}: refused, it resolves outside the data root {root}")
    files = [*extra_files, *images]
    splits = {split for _, _, split in entries}
    return RawDataset(
        images=FileImages([path for path, _, _ in entries], image_size, root),
        labels=np.array([label for _, label, _ in entries], dtype=np.int64),
        class_names=class_names,
        split=np.array([split for _, _, split in entries], dtype=np.int8),
        source_files={os.path.relpath(p, root): sha256_file(p) for p in files},
        split_origin="official" if UNASSIGNED not in splits else "stratified",
        origin=origin,
        groups=None if groups is None else groups[0],
        grouping=None if groups is None else groups[1],
    )
