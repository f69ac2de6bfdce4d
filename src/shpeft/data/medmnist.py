"""The official MedMNIST npz files (`<name>.npz` for 28 px, `<name>_<size>.npz` otherwise).

Files are read from a local `root`; they are downloaded through the `medmnist` package only when
`download: true`. The official train/val/test split is kept.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

import numpy as np
from pydantic import Field

from shpeft.data.images import array_to_rgb, check_array
from shpeft.data.registry import SPLITS, DatasetConfig, RawDataset, register_source
from shpeft.data.stream import ImageStream, chunk_length
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


KEYS = [f"{split}_{part}" for split in SPLITS for part in ("images", "labels")]
#: numpy's header readers by format version (3.0 only differs in allowing non-ASCII names).
_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
    (3, 0): np.lib.format.read_array_header_2_0,
}


def _members(path: Path) -> None:
    """Refuse a file that is not an npz archive holding the six arrays of an official file."""
    if not zipfile.is_zipfile(path):  # np.load would read a .npy or refuse a pickle instead
        raise ShpeftError(f"{path}: not an npz archive (truncated, or another format)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy") for name in archive.namelist()}
    except Exception as exc:
        raise ShpeftError(f"{path}: corrupt npz ({_brief(exc)})") from None
    missing = [key for key in KEYS if key not in names]
    if missing:
        raise ShpeftError(f"{path}: missing array(s) {', '.join(missing)}")


def _corrupt(path: Path, key: str, exc: Exception) -> ShpeftError:
    return ShpeftError(
        f"{path}: array '{key}' is corrupt or not a plain numeric array ({_brief(exc)})"
    )


def _labels(path: Path, key: str) -> np.ndarray:
    """A labels array, never unpickling anything (a corrupt file surfaces as many exception
    types, from zipfile, zlib and numpy's header parser)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz[key]
    except Exception as exc:  # also the refusal of an object array
        raise _corrupt(path, key, exc) from None


def _header(handle) -> tuple[tuple[int, ...], np.dtype]:
    """Read a .npy header from `handle`, leaving it at the first byte of data."""
    version = np.lib.format.read_magic(handle)
    if version not in _HEADERS:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, fortran_order, dtype = _HEADERS[version](handle)
    if dtype.hasobject:
        raise ValueError("an object array (ragged images or pickled data) cannot be read")
    if fortran_order and len(shape) > 1:
        raise ValueError("stored in Fortran order; save it again in C order")
    return shape, dtype


class NpzImages(ImageStream):
    """The images arrays of an npz file, decompressed a chunk of rows at a time."""

    def __init__(self, path: Path, image_size: int) -> None:
        self.path, self.parts = path, []
        for split in SPLITS:
            key = f"{split}_images"
            with self._member(key) as handle:
                shape, dtype = _header(handle)
            check_array(dtype, shape, f"{path}:{key}")
            self.parts.append((key, shape))
        super().__init__(sum(shape[0] for _, shape in self.parts), image_size)

    @contextlib.contextmanager
    def _member(self, key: str) -> Iterator[IO[bytes]]:
        """The array's bytes; any failure reading them is one message naming the array."""
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(f"{key}.npy") as handle:
                yield handle
        except ShpeftError:
            raise
        except Exception as exc:  # zlib, zipfile (CRC) and numpy's header parser alike
            raise _corrupt(self.path, key, exc) from None

    def chunks(self) -> Iterator[np.ndarray]:
        for key, shape in self.parts:
            with self._member(key) as handle:
                _header(handle)
                row = int(np.prod(shape[1:]))
                step = chunk_length(self.image_size, row)
                for start in range(0, shape[0], step):
                    count = min(step, shape[0] - start)
                    data = handle.read(count * row)
                    if len(data) != count * row:
                        raise EOFError(f"{len(data)} bytes where {count * row} were expected")
                    rows = np.frombuffer(data, np.uint8).reshape(count, *shape[1:])
                    yield array_to_rgb(rows, self.image_size, f"{self.path}:{key}")
                if handle.read(1):  # reading to the end also checks the member's CRC
                    raise ValueError("bytes after the last image")

    def name(self, index: int) -> str:
        for key, shape in self.parts:
            if index < shape[0]:
                return f"{self.path.name}:{key}[{index}]"
            index -= shape[0]
        raise IndexError(index)


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
    _members(path)
    images = NpzImages(path, cfg.image_size)
    class_names = [
        label for _, label in sorted(_info(cfg.name)["label"].items(), key=lambda kv: int(kv[0]))
    ]
    labels, split = [], []
    for index, (name, (key, shape)) in enumerate(zip(SPLITS, images.parts, strict=True)):
        label, n = _labels(path, f"{name}_labels"), shape[0]
        if not np.issubdtype(label.dtype, np.integer) or label.shape not in ((n,), (n, 1)):
            raise ShpeftError(
                f"{path}: {name}_labels is {label.dtype} {label.shape}; expected integers "
                f"shaped ({n}, 1), one per image of {key}"
            )
        labels.append(label.reshape(-1).astype(np.int64))
        split.append(np.full(n, index, dtype=np.int8))
    return RawDataset(
        images=images,
        labels=np.concatenate(labels),
        class_names=class_names,
        split=np.concatenate(split),
        source_files={path.name: sha256_file(path)},
        origin=str(path),
    )
