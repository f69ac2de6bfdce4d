"""The `prepare` step: load a dataset from its source, fix its split, write the prepared format."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shpeft.dag import Job
from shpeft.data.prepared import write_prepared
from shpeft.data.registry import DatasetConfig, load_raw
from shpeft.data.splits import check, finalise_split
from shpeft.errors import ShpeftError

log = logging.getLogger(__name__)


def run(job: Job, inputs: dict[str, Path], dataset_config: DatasetConfig) -> dict[str, Any]:
    return prepare(job["dataset"], dataset_config, job.outputs["data"])


def prepare(name: str, cfg: DatasetConfig, out_dir: Path) -> dict[str, Any]:
    """Write the prepared folder (images, labels, split, manifest); return the manifest."""
    raw = load_raw(cfg)
    if len(raw.images) == 0:
        raise ShpeftError(f"{raw.origin}: dataset '{name}': the source yielded no images")
    raw.split_origin = finalise_split(raw, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    check(raw, name)
    manifest = write_prepared(raw, name, cfg.model_dump(), Path(out_dir))
    log.info("prepared %s: %s", name, manifest["sizes"])
    return manifest
