"""The official MedMNIST npz files (`<name>.npz` for 28 px, `<name>_<size>.npz` otherwise).

Files are read from a local `root`; they are downloaded through the `medmnist` package only when
`download: true`. The official train/val/test split is kept.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shpeft.data.images import array_to_rgb
from shpeft.data.registry import SPLITS, DatasetConfig, RawDataset, register_source
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file

SIZES = (28, 64, 128, 224)


@dataclass
class MedMNISTConfig(DatasetConfig):
    #: As the medmnist package spells it, e.g. `breastmnist`, `pneumoniamnist`.
    name: str = "breastmnist"
    root: str = "data/medmnist"
    #: Which official file: 28, 64, 128 or 224 px.
    size: int = 28
    download: bool = False


def npz_name(name: str, size: int) -> str:
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def _info(name: str) -> dict:
    from medmnist.info import INFO

    if name not in INFO:
        raise ShpeftError(f"medmnist.name: unknown MedMNIST dataset '{name}'")
    info = INFO[name]
    if "multi-label" in info["task"]:
        raise ShpeftError(f"medmnist.name: '{name}' is multi-label; only single-label tasks work")
    return info


def _download(name: str, size: int, root: Path) -> None:
    import medmnist

    root.mkdir(parents=True, exist_ok=True)
    dataset_cls = getattr(medmnist, _info(name)["python_class"])
    dataset_cls(split="train", download=True, root=str(root), size=size)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    keys = [f"{split}_{part}" for split in SPLITS for part in ("images", "labels")]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in keys if key not in npz.files]
            if missing:
                raise ShpeftError(f"{path}: missing array(s) {', '.join(missing)}")
            return {key: npz[key] for key in keys}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ShpeftError(f"{path}: corrupt or truncated npz ({exc})") from None


@register_source("medmnist", MedMNISTConfig)
def load_medmnist(cfg: MedMNISTConfig) -> RawDataset:
    if cfg.size not in SIZES:
        raise ShpeftError(f"medmnist.size: {cfg.size} is not one of {SIZES}")
    root = Path(cfg.root).expanduser()
    path = root / npz_name(cfg.name, cfg.size)
    if not path.is_file():
        if not cfg.download:
            raise ShpeftError(f"{path}: MedMNIST file not found (set download: true to fetch it)")
        _download(cfg.name, cfg.size, root)
    arrays = _read_npz(path)
    class_names = [
        label for _, label in sorted(_info(cfg.name)["label"].items(), key=lambda kv: int(kv[0]))
    ]
    images, labels, split = [], [], []
    for index, name in enumerate(SPLITS):
        part = arrays[f"{name}_images"]
        label = arrays[f"{name}_labels"].reshape(len(part), -1)
        if label.shape[1] != 1:
            raise ShpeftError(f"{path}: {name}_labels has {label.shape[1]} columns; expected one")
        images.append(array_to_rgb(part, cfg.image_size, f"{path}:{name}_images"))
        labels.append(label[:, 0].astype(np.int64))
        split.append(np.full(len(part), index, dtype=np.int8))
    return RawDataset(
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        class_names=class_names,
        split=np.concatenate(split),
        source_files={path.name: sha256_file(path)},
    )
