"""`busi`: the Breast Ultrasound Images dataset (Al-Dhabyani et al., Data in Brief 2020).

Origin: the `Dataset_BUSI_with_GT` archive of the authors' release (scholar.cu.edu.eg, mirrored on
Kaggle as "breast-ultrasound-images-dataset"). Expected tree::

    Dataset_BUSI_with_GT/            <- root
        benign/     benign (1).png, benign (1)_mask.png, ... (437 images)
        malignant/  malignant (1).png, malignant (1)_mask.png, ... (210 images)
        normal/     normal (1).png, normal (1)_mask.png, ... (133 images)

Each image sits beside its segmentation mask `<image>_mask.png`, some beside further masks
`<image>_mask_1.png`, `<image>_mask_2.png`; masks are never samples. There is no official split:
a seeded stratified split is drawn. The archive is known to hold duplicated images (the leakage
guard, `cross_split_duplicates`, reports them).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field

from shpeft.data.archives import class_folders, image_files, unsplit_classes
from shpeft.data.registry import GroupedConfig, RawDataset, register_source, resolve_root
from shpeft.errors import ShpeftError

CLASSES = ("benign", "malignant", "normal")
OFFICIAL = {"benign": 437, "malignant": 210, "normal": 133}
MASK = re.compile(r"^(?P<image>.+)_mask(?:_\d+)?(?P<suffix>\.png)$", re.IGNORECASE)


class BusiConfig(GroupedConfig):
    """The BUSI breast ultrasound archive."""

    root: str = Field(min_length=1)
    """The `Dataset_BUSI_with_GT/` folder, holding `benign/`, `malignant/` and `normal/`."""


def images_without_masks(folder: Path) -> list[Path]:
    """The images of one class folder; a mask whose image is missing is an error."""
    files = image_files(folder)
    masks = [path for path in files if MASK.match(path.name)]
    images = [path for path in files if not MASK.match(path.name)]
    names = {path.name for path in images}
    for mask in masks:
        match = MASK.match(mask.name)
        image = match["image"] + match["suffix"]
        if image not in names:
            raise ShpeftError(f"{mask}: segmentation mask without its image '{image}'")
    if not images:
        raise ShpeftError(f"{folder}: holds masks but no images")
    return images


@register_source("busi", BusiConfig, raw_inputs=lambda cfg: [Path(cfg.root)])
def load_busi(cfg: BusiConfig) -> RawDataset:
    """The BUSI breast ultrasound archive: benign, malignant, normal; masks skipped."""
    root = resolve_root(cfg.root, "busi.root")
    folders = class_folders(root, CLASSES)
    per_class = {f.name: images_without_masks(f) for f in folders}
    return unsplit_classes(root, cfg, per_class, OFFICIAL)
