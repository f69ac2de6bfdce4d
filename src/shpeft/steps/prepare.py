"""The `prepare` step: load a dataset from its source, fix its split, write the prepared format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shpeft.dag import Job
from shpeft.data.prepared import prepare_dataset
from shpeft.data.registry import DatasetConfig


def run(job: Job, inputs: dict[str, Path], dataset_config: DatasetConfig) -> dict[str, Any]:
    return prepare_dataset(job["dataset"], dataset_config, job.outputs["data"])
