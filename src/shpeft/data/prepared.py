"""The prepared on-disk format of a dataset: what `prepare` writes and training reads.

`results/data/<dataset>/` holds `images.npy` (N, S, S, 3) uint8, `labels.npy` (N,) int64 and
`split.npy` (N,) int8 (0 train, 1 val, 2 test), all memory-mappable so that training never decodes
an image, plus `manifest.json` (class names, counts per split and class, source-file hashes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shpeft.data.leakage import duplicates, enforce
from shpeft.data.registry import SPLITS, DatasetConfig, RawDataset, load_raw
from shpeft.data.splits import check, counts, finalise_split, group_counts
from shpeft.data.stream import as_stream, write_images
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, sha256_file, write_json

log = logging.getLogger(__name__)
ARRAYS = ("images", "labels", "split")
MANIFEST = "manifest.json"


def write_prepared(raw: RawDataset, name: str, cfg: DatasetConfig, out_dir: Path) -> dict[str, Any]:
    """Write the arrays and the manifest (class names, counts, duplicates, source-file and array
    hashes); the images stream through, and nothing is left if any check fails."""
    stream = as_stream(raw.images, raw.origin)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        digests = write_images(stream, tmp / "images.npy")
        report = duplicates(digests, raw.split, raw.labels, stream.name)
        enforce(report, name, cfg.cross_split_duplicates, raw.origin)
        for key, array in {"labels": raw.labels, "split": raw.split}.items():
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(array))
        manifest = {
            "dataset": name,
            "config": cfg.model_dump(),
            "class_names": raw.class_names,
            "num_classes": len(raw.class_names),
            "image_shape": [stream.image_size, stream.image_size, 3],
            "counts": counts(raw),
            "sizes": {s: int(np.sum(raw.split == i)) for i, s in enumerate(SPLITS)},
            "split_origin": raw.split_origin,
            "grouping": raw.grouping,
            "groups_per_split": group_counts(raw),
            "duplicates": report,
            "annotations": raw.annotations,
            "source_files": raw.source_files,
            "arrays_sha256": {key: sha256_file(tmp / f"{key}.npy") for key in ARRAYS},
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


def prepare_dataset(name: str, cfg: DatasetConfig, out_dir: Path) -> dict[str, Any]:
    """Write the prepared folder (images, labels, split, manifest); return the manifest."""
    raw = load_raw(cfg)
    if len(raw.images) == 0:
        raise ShpeftError(f"{raw.origin}: dataset '{name}': the source yielded no images")
    raw.split_origin = finalise_split(raw, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    check(raw, name)
    manifest = write_prepared(raw, name, cfg, Path(out_dir))
    log.info("prepared %s: %s", name, manifest["sizes"])
    return manifest


@dataclass
class PreparedDataset:
    root: Path
    manifest: dict[str, Any]
    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray

    @classmethod
    def load(cls, root: str | Path) -> PreparedDataset:
        root = Path(root)
        try:
            manifest = read_json(root / MANIFEST)
            arrays = [np.load(root / f"{name}.npy", mmap_mode="r") for name in ARRAYS]
        except (OSError, ValueError) as exc:
            raise ShpeftError(f"{root}: prepared dataset missing or unreadable ({exc})") from None
        return cls(root, manifest, *arrays)

    @property
    def class_names(self) -> list[str]:
        return self.manifest["class_names"]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def part(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of one split, read into memory (uint8, so small)."""
        index = np.flatnonzero(self.split == SPLITS.index(split))
        return np.asarray(self.images[index]), np.asarray(self.labels[index])
