"""The embedded demo data: generated images that mimic ultrasound, X-ray and dermoscopy.

Fully determined by `seed`, so the demo runs offline and reproduces byte for byte.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from shpeft.data.registry import TEST, TRAIN, VAL, DatasetConfig, RawDataset, register_source
from shpeft.data.synthetic_images import KINDS, generate


class SyntheticConfig(DatasetConfig):
    """Generated images that mimic a modality (see `synthetic_images`)."""

    kind: Literal[tuple(KINDS)] = "ultrasound"  # type: ignore[valid-type]
    """Which look: ultrasound, xray, dermoscopy (the demo's targets) or shapes (its source)."""
    n_train: int = Field(480, ge=1)
    """Training images."""
    n_val: int = Field(120, ge=1)
    """Validation images."""
    n_test: int = Field(240, ge=1)
    """Test images."""
    seed: int = Field(0, ge=0)
    """Seeds the images and labels."""


@register_source("synthetic", SyntheticConfig)
def load_synthetic(cfg: SyntheticConfig) -> RawDataset:
    """Generated images that mimic ultrasound, X-ray or dermoscopy, offline and seeded."""
    sizes = (cfg.n_train, cfg.n_val, cfg.n_test)
    images, labels = generate(cfg.kind, sum(sizes), cfg.image_size, cfg.seed)
    split = np.repeat(np.array([TRAIN, VAL, TEST], dtype=np.int8), sizes)
    return RawDataset(images, labels, list(KINDS[cfg.kind]), split)
