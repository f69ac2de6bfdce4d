"""The data-source registry: `source: <name>` in a dataset's params picks a loader from here.

Adding a source is one module in this package that defines its config (subclassing
`DatasetConfig`, every field documented) and a loader decorated with
`@register_source(name, ConfigClass)`. The registry finds every module here; the params model's
`datasets.<id>` union, the JSON schema and the reference docs gain the source from it.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import Field, create_model, field_validator

from shpeft.config import Section
from shpeft.data.stream import ImageStream
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
    cross_split_duplicates: Literal["report", "refuse"] = "report"
    """Identical images (same prepared pixels) in two splits leak training data into evaluation:
    `report` lists them in the manifest and the log, `refuse` stops preparation."""


@dataclass
class RawDataset:
    """What a source returns: images converted to RGB uint8 at the target size, as an array or,
    for anything read from files, a stream decoded while it is written."""

    images: np.ndarray | ImageStream  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64 indices into class_names
    class_names: list[str]
    split: np.ndarray  # (N,) int8 of TRAIN/VAL/TEST/UNASSIGNED
    #: Every file the data came from, relative path -> sha256 (empty for generated data).
    source_files: dict[str, str] = field(default_factory=dict)
    split_origin: str = "official"
    #: The file or folder the data came from, named in messages about its content.
    origin: str = "generated data"
    #: Per image, the patient or lesion it shows (None: every image its own); a drawn split
    #: keeps each group in one split.
    groups: np.ndarray | None = None
    #: How the groups were read (for the manifest), e.g. "column patient".
    grouping: str | None = None
    #: Further per-image labels the source ships (e.g. each pathologist's), kept in the manifest.
    annotations: dict[str, list] = field(default_factory=dict)


Loader = Callable[[Any], RawDataset]
#: The files and folders a source reads, for the DAG: a change there reruns `prepare`.
RawInputs = Callable[[Any], list[Path]]


@dataclass(frozen=True)
class Source:
    name: str
    #: The source's config with `source: <name>`, made by `register_source`.
    config_model: type[DatasetConfig]
    load: Loader
    raw_inputs: RawInputs
    fetch: RawInputs


_SOURCES: dict[str, Source] = {}


def register_source(
    name: str,
    config_cls: type[DatasetConfig],
    raw_inputs: RawInputs = lambda cfg: [],
    fetch: RawInputs = lambda cfg: [],
) -> Callable[[Loader], Loader]:
    """Register a loader under `name`, the value of `datasets.<id>.source` that selects it;
    `raw_inputs` names what it reads (folders stand for every file inside them), `fetch`
    downloads what it would otherwise download itself and returns those files."""

    def decorator(load: Loader) -> Loader:
        summary = (load.__doc__ or config_cls.__doc__ or name).strip().splitlines()[0]
        model = create_model(
            f"{config_cls.__name__.removesuffix('Config')}Dataset",
            __base__=config_cls,
            __doc__=f"`source: {name}`: {summary}",
            source=(Literal[name], Field(description=f"`{name}`: {summary}")),
        )
        _SOURCES[name] = Source(name, model, load, raw_inputs, fetch)
        return load

    return decorator


def sources() -> dict[str, Source]:
    """Every registered source by name, in name order whichever modules were imported first
    (every module of this package is imported here)."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")
    return dict(sorted(_SOURCES.items()))


def config_union() -> Any:
    """The type of a `datasets.<id>` entry: one config model per source, told apart by `source`."""
    models = tuple(source.config_model for source in sources().values())
    return Annotated[Union[models], Field(discriminator="source")]  # noqa: UP007


def load_raw(cfg: DatasetConfig) -> RawDataset:
    """The dataset as its source reads it."""
    return sources()[cfg.source].load(cfg)


def fetch_inputs(cfg: DatasetConfig) -> list[Path]:
    """Download what the dataset's source would fetch itself (`shpeft fetch`); the files."""
    return sources()[cfg.source].fetch(cfg)


def raw_inputs(cfg: DatasetConfig) -> list[Path]:
    """The files and folders the dataset is read from (none for generated data)."""
    return sources()[cfg.source].raw_inputs(cfg)


class GroupedConfig(DatasetConfig):
    """Keys of the file-based sources, whose images may share a patient or a lesion."""

    group_pattern: str | None = None
    """A regular expression searched in each image's path (relative to `root`) whose first group
    names the patient or lesion it shows, e.g. `^(P\\d+)_`: a drawn split keeps each group in
    one split (and a split of the source's own must not cross one)."""

    @field_validator("group_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                if re.compile(pattern).groups < 1:
                    raise ValueError("needs a group, (...), naming the patient or lesion")
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return pattern


def resolve_root(root: str | Path, key: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ShpeftError(f"{key}: data root '{root}' is not a directory")
    return path.resolve()
