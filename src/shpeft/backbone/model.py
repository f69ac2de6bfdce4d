"""The backbone step's output, written and read in one place.

`results/backbone/` holds `backbone.safetensors` (every tensor but the classifier head) and
`backbone.json` (the config, the origin, the parameter count and the weights file's sha256). Every
later step loads the backbone from there, and the sha256 is what files bound to this backbone
record (`shpeft.bound`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from shpeft.backbone.config import BackboneConfig
from shpeft.backbone.weights import create, fit_weights, without_head
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, sha256_file, write_json

WEIGHTS_FILE = "backbone.safetensors"
META_FILE = "backbone.json"


@dataclass(frozen=True)
class BackboneInfo:
    """What `backbone.json` says of the backbone."""

    config: BackboneConfig
    sha256: str
    num_params: int
    origin: str
    raw: dict[str, Any]


def write_backbone(
    model: nn.Module, cfg: BackboneConfig, origin: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """Write the headless weights and their description to `out_dir`, atomically."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file(without_head(model.state_dict()), tmp / WEIGHTS_FILE)
        meta = {
            "config": cfg.model_dump(),
            "num_params": sum(p.numel() for p in model.parameters()),
            "sha256": sha256_file(tmp / WEIGHTS_FILE),
            **origin,
        }
        write_json(tmp / META_FILE, meta)
    return meta


def backbone_info(backbone_dir: str | Path) -> BackboneInfo:
    """The description of the backbone in `backbone_dir` (no weights are read)."""
    path = Path(backbone_dir) / META_FILE
    try:
        meta = read_json(path)
    except (OSError, ValueError) as exc:
        raise ShpeftError(f"{path}: backbone description missing or unreadable ({exc})") from None
    return BackboneInfo(
        BackboneConfig.model_validate(meta["config"]),
        meta["sha256"],
        meta["num_params"],
        meta["origin"],
        meta,
    )


def load_backbone(backbone_dir: str | Path, num_classes: int) -> tuple[nn.Module, BackboneInfo]:
    """A model with the step's weights and a fresh `num_classes` head; the hash is checked."""
    info = backbone_info(backbone_dir)
    path = Path(backbone_dir) / WEIGHTS_FILE
    if sha256_file(path) != info.sha256:
        raise ShpeftError(f"{path}: sha256 differs from the one recorded in {META_FILE}")
    model = create(info.config, num_classes=num_classes)
    fit_weights(model, load_file(path), str(path))
    return model, info
