"""The data-source registry: `source: <name>` in a dataset's params picks a loader from here.

Adding a source is one module in this package that defines its config (subclassing
`DatasetConfig`, every field documented) and a loader decorated with
`@register_source(name, ConfigClass)`. The registry finds every module here; the params model's
`datasets.<id>` union, the JSON schema and the reference docs gain the source from it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import Field, create_model

from shpeft.config import Section
from shpeft.errors import ShpeftError

SPLITS = ("train", "val", "test")
#: Stored in the per-image split array; UNASSIGNED is filled by a seeded stratified split.
TRAIN, VAL, TEST, UNASSIGNED = 0, 1, 2, -1


class DatasetConfig(Section):
    """Keys every source takes besides its `source`."""

    image_size: int = Field(ge=16, le=1024)
    """Side length in pixels of the stored square uint8 images."""
    val_fraction: float = Field(0.15, ge=0, lt=1)
    """Share of the cases drawn into validation where the source has no validation split."""
    test_fraction: float = Field(0.15, ge=0, lt=1)
    """Share of the cases drawn into test where the source has no test split."""
    split_seed: int = Field(0, ge=0)
    """Seeds the stratified split drawn where the source has none."""


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
    #: The source's config with `source: <name>`, made by `register_source`.
    config_model: type[DatasetConfig]
    load: Loader


_SOURCES: dict[str, Source] = {}


def register_source(name: str, config_cls: type[DatasetConfig]) -> Callable[[Loader], Loader]:
    """Register a loader under `name`, the value of `datasets.<id>.source` that selects it."""

    def decorator(load: Loader) -> Loader:
        summary = (load.__doc__ or config_cls.__doc__ or name).strip().splitlines()[0]
        model = create_model(
            f"{config_cls.__name__.removesuffix('Config')}Dataset",
            __base__=config_cls,
            __doc__=f"`source: {name}`: {summary}",
            source=(Literal[name], Field(description=f"`{name}`: {summary}")),
        )
        _SOURCES[name] = Source(name, model, load)
        return load

    return decorator


def sources() -> dict[str, Source]:
    """Every registered source by name (every module of this package is imported first)."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")
    return dict(_SOURCES)


def config_union() -> Any:
    """The type of a `datasets.<id>` entry: one config model per source, told apart by `source`."""
    models = tuple(source.config_model for source in sources().values())
    return Annotated[Union[models], Field(discriminator="source")]  # noqa: UP007


def load_raw(cfg: DatasetConfig) -> RawDataset:
    """The dataset as its source reads it."""
    return sources()[cfg.source].load(cfg)


def resolve_root(root: str | Path, key: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ShpeftError(f"{key}: data root '{root}' is not a directory")
    return path.resolve()
