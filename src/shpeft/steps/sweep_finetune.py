"""The `sweep_finetune` step: a sweep's method trained at one value, as an ordinary run would be,
on the point's own mask (`sweep_mask`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shpeft.dag import Job
from shpeft.methods.registry import MethodConfig
from shpeft.steps.finetune import train_run
from shpeft.sweeps import swept_value
from shpeft.train.config import FinetuneConfig


def run(
    job: Job,
    inputs: dict[str, Path],
    method: str,
    method_config: MethodConfig,
    finetune: FinetuneConfig,
) -> dict[str, Any]:
    point = {"sweep": job["sweep"], "value": swept_value(job["value"])}
    return train_run(job, inputs, method, method_config, finetune, point)
