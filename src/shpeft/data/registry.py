"""The data-source registry: `source: <name>` in a dataset's params picks a loader from here.

Adding a source is one module that defines a config dataclass (subclassing `DatasetConfig`) and a
loader decorated with `@register_source(name, ConfigClass)`, plus its keys in the params schema.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shpeft.errors import ShpeftError
from shpeft.params import build

SPLITS = ("train", "val", "test")
#: Stored in the per-image split array; UNASSIGNED is filled by a seeded stratified split.
TRAIN, VAL, TEST, UNASSIGNED = 0, 1, 2, -1


@dataclass
class DatasetConfig:
    """Options every source takes."""

    source: str
    #: Side length in pixels of the stored square uint8 images.
    image_size: int
    #: Used only where the source has no official split (or no validation split).
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0


@dataclass
class RawDataset:
    """What a source returns: images already converted to RGB uint8 at the target size."""

    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64 indices into class_names
    class_names: list[str]
    split: np.ndarray  # (N,) int8 of TRAIN/VAL/TEST/UNASSIGNED
    #: Every file the data came from, relative path -> sha256 (empty for generated data).
    source_files: dict[str, str] = field(default_factory=dict)
    split_origin: str = "official"
    #: The file or folder the data came from, named in messages about its content.
    origin: str = "generated data"


Loader = Callable[[Any], RawDataset]


@dataclass(frozen=True)
class Source:
    name: str
    config_cls: type[DatasetConfig]
    load: Loader


_SOURCES: dict[str, Source] = {}
_MODULES = ("synthetic", "medmnist", "imagefolder", "csvfile")


def register_source(name: str, config_cls: type[DatasetConfig]) -> Callable[[Loader], Loader]:
    def decorator(load: Loader) -> Loader:
        _SOURCES[name] = Source(name, config_cls, load)
        return load

    return decorator


def sources() -> dict[str, Source]:
    for module in _MODULES:
        importlib.import_module(f"shpeft.data.{module}")
    return dict(_SOURCES)


def get_source(name: str) -> Source:
    known = sources()
    if name not in known:
        raise ShpeftError(f"unknown data source '{name}' (known: {', '.join(sorted(known))})")
    return known[name]


def dataset_config(params: dict[str, Any]) -> DatasetConfig:
    """The typed config of one dataset's params entry."""
    return build(get_source(params["source"]).config_cls, params)


def resolve_root(root: str | Path, key: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ShpeftError(f"{key}: data root '{root}' is not a directory")
    return path.resolve()
