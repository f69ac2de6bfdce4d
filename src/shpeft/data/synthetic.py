"""The embedded demo data: generated images that mimic ultrasound, X-ray and dermoscopy.

Fully determined by `seed`, so the demo runs offline and reproduces byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shpeft.data.registry import TEST, TRAIN, VAL, DatasetConfig, RawDataset, register_source
from shpeft.data.synthetic_images import KINDS, generate


@dataclass
class SyntheticConfig(DatasetConfig):
    #: One of `synthetic_images.KINDS`: ultrasound, xray, dermoscopy (targets) or shapes (source).
    kind: str = "ultrasound"
    n_train: int = 480
    n_val: int = 120
    n_test: int = 240
    seed: int = 0


@register_source("synthetic", SyntheticConfig)
def load_synthetic(cfg: SyntheticConfig) -> RawDataset:
    sizes = (cfg.n_train, cfg.n_val, cfg.n_test)
    images, labels = generate(cfg.kind, sum(sizes), cfg.image_size, cfg.seed)
    split = np.repeat(np.array([TRAIN, VAL, TEST], dtype=np.int8), sizes)
    return RawDataset(images, labels, list(KINDS[cfg.kind]), split)
