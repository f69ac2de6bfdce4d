"""`kvasir`: the Kvasir v2 gastrointestinal endoscopy dataset (Pogorelov et al., MMSys 2017).

Origin: `kvasir-dataset-v2.zip` from datasets.simula.no/kvasir. Expected tree::

    kvasir-dataset-v2/               <- root
        dyed-lifted-polyps/  <id>.jpg ... (1,000 images per class)
        dyed-resection-margins/  esophagitis/  normal-cecum/  normal-pylorus/
        normal-z-line/  polyps/  ulcerative-colitis/

There is no official split: a seeded stratified split is drawn.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shpeft.data.archives import class_folders, image_files, unsplit_classes
from shpeft.data.registry import GroupedConfig, RawDataset, register_source, resolve_root

CLASSES = (
    "dyed-lifted-polyps",
    "dyed-resection-margins",
    "esophagitis",
    "normal-cecum",
    "normal-pylorus",
    "normal-z-line",
    "polyps",
    "ulcerative-colitis",
)


class KvasirConfig(GroupedConfig):
    """The Kvasir v2 endoscopy archive."""

    root: str = Field(min_length=1)
    """The `kvasir-dataset-v2/` folder, holding the eight class folders."""


@register_source("kvasir", KvasirConfig, raw_inputs=lambda cfg: [Path(cfg.root)])
def load_kvasir(cfg: KvasirConfig) -> RawDataset:
    """The Kvasir v2 endoscopy archive: eight findings and landmarks."""
    root = resolve_root(cfg.root, "kvasir.root")
    folders = class_folders(root, CLASSES)
    per_class = {f.name: image_files(f) for f in folders}
    return unsplit_classes(root, cfg, per_class, dict.fromkeys(CLASSES, 1000))
