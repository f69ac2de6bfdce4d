"""The `backbone` step: the weights from their origin, written headless with their hash."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shpeft.backbone.config import BackboneConfig
from shpeft.backbone.model import write_backbone
from shpeft.backbone.weights import obtain
from shpeft.dag import Job
from shpeft.train.devices import AUTO, Compute

log = logging.getLogger(__name__)


def run(
    job: Job, inputs: dict[str, Path], backbone: BackboneConfig, device: str, deterministic: bool
) -> dict[str, Any]:
    return build(backbone, job.outputs["backbone"], Compute(device, deterministic))


def build(cfg: BackboneConfig, out_dir: Path, compute: Compute = AUTO) -> dict[str, Any]:
    """Write the backbone folder of `cfg` to `out_dir`; return its description."""
    model, origin = obtain(cfg, compute)
    meta = write_backbone(model, cfg, origin, Path(out_dir))
    log.info("backbone %s (%s): sha256 %s", cfg.model, meta["origin"], meta["sha256"])
    return meta
