"""The prepared on-disk format of a dataset: what `prepare` writes and training reads.

`results/data/<dataset>/` holds `images.npy` (N, S, S, 3) uint8, `labels.npy` (N,) int64 and
`split.npy` (N,) int8 (0 train, 1 val, 2 test), all memory-mappable so that training never decodes
an image, plus `manifest.json` (class names, counts per split and class, source-file hashes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shpeft.data.registry import SPLITS
from shpeft.errors import ShpeftError
from shpeft.fileio import read_json

ARRAYS = ("images", "labels", "split")


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
            manifest = read_json(root / "manifest.json")
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
