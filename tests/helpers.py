"""Builders shared by several test modules: tiny backbones and weights files, image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from shpeft.backbone.config import BackboneConfig
from shpeft.backbone.weights import create
from shpeft.data.registry import DatasetConfig, sources

#: The tiny ViT: 16 px, 4 px patches (16 tokens + class token), width 32, 2 blocks, MLP 128.
TINY_VIT = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}


def tiny_backbone(**overrides) -> BackboneConfig:
    """The tiny ViT's backbone config (random weights unless `weights` says otherwise)."""
    settings = {"model": "vit_tiny_patch16_224", "model_args": dict(TINY_VIT), "weights": "none"}
    return BackboneConfig.model_validate({**settings, **overrides})


def tiny_weights(path: Path, **args) -> dict[str, torch.Tensor]:
    """A weights file of the tiny ViT (`args` change its architecture): safetensors, or a torch
    checkpoint holding `{"state_dict": ...}` for other suffixes."""
    model = create(tiny_backbone(model_args={**TINY_VIT, **args}))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"state_dict": state}, path)
    return state


def dataset(entry: dict) -> DatasetConfig:
    """A dataset's typed config from its params entry."""
    return sources()[entry["source"]].config_model.model_validate(entry)


def png(path: Path, mode: str = "L", size=(20, 24), value: int = 128) -> Path:
    """A small image file of one value, in the given Pillow mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        array = np.full(size[::-1], value * 257, dtype=np.uint16)
        Image.fromarray(array).save(path)
    elif mode == "P":
        image = Image.new("P", size, 1)
        image.putpalette([0, 0, 0, value, 0, 0])
        image.save(path)
    else:
        Image.new(mode, size, value if mode in ("L", "1") else (value,) * len(mode)).save(path)
    return path


def image_folder(
    root: Path, classes=("a", "b"), per_class=6, modes=("L", "RGB", "RGBA", "P", "I;16")
):
    """`root/<class>/<i>.png` for each class, cycling through Pillow modes."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            png(root / name / f"{i}.png", modes[i % len(modes)], value=60 + 100 * c)
    return root
