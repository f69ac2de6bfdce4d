"""The `sweep_mask` step: a sweep method's mask variant rebuilt at one value of the sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shpeft.dag import Job
from shpeft.selection.masks import MaskConfig
from shpeft.steps.mask import build
from shpeft.sweeps import point_mask, swept_value


def run(job: Job, inputs: dict[str, Path], mask: MaskConfig) -> dict[str, Any]:
    point = point_mask(mask, job["sweep"], swept_value(job["value"]))
    return build(inputs["importance"], point, job.outputs["mask"])
