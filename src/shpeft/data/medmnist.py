"""The official MedMNIST npz files (`<name>.npz` for 28 px, `<name>_<size>.npz` otherwise).

Files are read from a local `root`; they are downloaded through the `medmnist` package only when
`download: true`. The official train/val/test split is kept.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from shpeft.data.images import array_to_rgb
from shpeft.data.registry import SPLITS, DatasetConfig, RawDataset, register_source
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file


class MedMNISTConfig(DatasetConfig):
    """An official MedMNIST npz file."""

    name: str = Field(pattern=r"^[a-z0-9]+$")
    """As the medmnist package spells it, e.g. `breastmnist`, `pneumoniamnist`."""
    root: str = Field("data/medmnist", min_length=1)
    """The folder holding the npz files."""
    size: Literal[28, 64, 128, 224] = 28
    """Which official file: 28, 64, 128 or 224 px."""
    download: bool = False
    """Fetch a missing file through the medmnist package (needs internet)."""


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
    """The six arrays of an official file, never unpickling anything.

    A corrupt file surfaces as many exception types (from zipfile, zlib and numpy's header
    parser); each becomes one message naming the file and, where known, the array.
    """
    keys = [f"{split}_{part}" for split in SPLITS for part in ("images", "labels")]
    if not zipfile.is_zipfile(path):  # np.load would read a .npy or refuse a pickle instead
        raise ShpeftError(f"{path}: not an npz archive (truncated, or another format)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ShpeftError(f"{path}: corrupt npz ({_brief(exc)})") from None
    with npz:
        missing = [key for key in keys if key not in npz.files]
        if missing:
            raise ShpeftError(f"{path}: missing array(s) {', '.join(missing)}")
        arrays = {}
        for key in keys:
            try:
                arrays[key] = npz[key]
            except Exception as exc:  # also the refusal of an object array (ragged images)
                raise ShpeftError(
                    f"{path}: array '{key}' is corrupt or not a plain numeric array ({_brief(exc)})"
                ) from None
    return arrays


def _brief(exc: Exception) -> str:
    """The type and first line of an error, printable (numpy may quote a garbled header)."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {ascii(lines[0] if lines else '')[1:-1][:160]}"


def _read(cfg: MedMNISTConfig) -> list[Path]:
    """The npz file; none where the step fetches it (`download: true`), since it may not exist
    when the DAG is planned."""
    return [] if cfg.download else [Path(cfg.root) / npz_name(cfg.name, cfg.size)]


def _fetch(cfg: MedMNISTConfig) -> list[Path]:
    """The npz file of `download: true`, downloaded if it is missing."""
    if not cfg.download:
        return []
    path = Path(cfg.root).expanduser() / npz_name(cfg.name, cfg.size)
    if not path.is_file():
        _download(cfg.name, cfg.size, path.parent)
    return [path]


@register_source("medmnist", MedMNISTConfig, raw_inputs=_read, fetch=_fetch)
def load_medmnist(cfg: MedMNISTConfig) -> RawDataset:
    """The official MedMNIST npz files, with their official split."""
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
        part = array_to_rgb(arrays[f"{name}_images"], cfg.image_size, f"{path}:{name}_images")
        label, n = arrays[f"{name}_labels"], len(part)
        if not np.issubdtype(label.dtype, np.integer) or label.shape not in ((n,), (n, 1)):
            raise ShpeftError(
                f"{path}: {name}_labels is {label.dtype} {label.shape}; expected integers "
                f"shaped ({n}, 1), one per image of {name}_images"
            )
        images.append(part)
        labels.append(label.reshape(-1).astype(np.int64))
        split.append(np.full(len(part), index, dtype=np.int8))
    return RawDataset(
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        class_names=class_names,
        split=np.concatenate(split),
        source_files={path.name: sha256_file(path)},
        origin=str(path),
    )
