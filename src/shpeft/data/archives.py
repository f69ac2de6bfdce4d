"""What the dataset presets share: reading an official archive's tree strictly.

A preset knows what its archive holds, so anything else (a missing folder, a stray file, an image
without its label or a label without its image) stops preparation with one message naming the
path, before anything is written: a damaged or partial download must not become a dataset.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from shpeft.data.files import collect
from shpeft.data.images import EXTENSIONS
from shpeft.data.registry import UNASSIGNED, GroupedConfig, RawDataset
from shpeft.errors import ShpeftError

log = logging.getLogger(__name__)
T = TypeVar("T")


def require(path: Path, what: str) -> Path:
    """`path`, or an error naming it as the archive's `what`."""
    if not path.exists():
        raise ShpeftError(f"{path}: {what} not found; is the root the folder the archive unpacks?")
    return path


def visible(folder: Path) -> list[Path]:
    """The folder's entries, sorted, without hidden ones (`.DS_Store`, `._*`)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def class_folders(root: Path, classes: Sequence[str]) -> list[Path]:
    """`root/<class>/` for each class in order; a missing one, or any other entry, is an error."""
    found = {p.name: p for p in visible(root)}
    for name in classes:
        if name not in found or not found[name].is_dir():
            raise ShpeftError(f"{root / name}: class folder not found (expected {list(classes)})")
    extra = sorted(set(found) - set(classes))
    if extra:
        raise ShpeftError(f"{root / extra[0]}: unexpected entry; the folder holds {list(classes)}")
    return [found[name] for name in classes]


def image_files(folder: Path, ignored: Collection[str] = ()) -> list[Path]:
    """The images of `folder` (not recursive); a file that is neither an image nor `ignored`
    (a licence, say) is an error, as is a folder without images."""
    images = []
    for path in visible(folder):
        if path.is_file() and path.suffix.lower() in EXTENSIONS:
            images.append(path)
        elif path.name not in ignored:
            raise ShpeftError(f"{path}: unexpected entry among the images of {folder}")
    if not images:
        raise ShpeftError(f"{folder}: holds no image files")
    return images


def paired(
    images: Mapping[str, Path], labels: Mapping[str, T], images_in: str, labels_in: str
) -> list[tuple[Path, T]]:
    """Each image with its label, by key, in the labels' order; an image without a label or a
    label without an image is an error naming it."""
    for key, path in images.items():
        if key not in labels:
            raise ShpeftError(f"{path}: image without a label in {labels_in}")
    for key in labels:
        if key not in images:
            raise ShpeftError(f"{labels_in}: label of '{key}' without its image in {images_in}")
    return [(images[key], label) for key, label in labels.items()]


def read_lines(path: Path) -> list[str]:
    """A text file's lines (a byte-order mark dropped), or an error naming it."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ShpeftError(f"{path}: not a readable UTF-8 text file ({exc})") from None


def add_once(labels: dict[str, T], key: str, value: T, where: str) -> None:
    """Record one image's label; a second row for the same image is an error naming it."""
    if key in labels:
        raise ShpeftError(f"{where}: '{key}' is listed twice")
    labels[key] = value


def read_rows(path: Path, columns: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    """A CSV file's rows with their line numbers, after checking that its header is `columns`."""
    try:
        with open(require(path, "label file"), newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if list(reader.fieldnames or []) != list(columns):
                raise ShpeftError(
                    f"{path}: header {reader.fieldnames} is not the official {list(columns)}"
                )
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ShpeftError(f"{path}: not a readable UTF-8 CSV file ({exc})") from None
    if not rows:
        raise ShpeftError(f"{path}: no rows")
    return rows


def expect_counts(origin: Path, found: Mapping[str, int], official: Mapping[str, int]) -> None:
    """Log where the archive's class counts differ from the official release's (a partial
    download, or a curated copy); not an error, since users may clean their copy on purpose."""
    if dict(found) != dict(official):
        log.warning(
            "%s: images per class %s; the official archive holds %s", origin, found, official
        )


def unsplit_classes(
    root: Path,
    cfg: GroupedConfig,
    per_class: Mapping[str, list[Path]],
    official: Mapping[str, int],
) -> RawDataset:
    """A dataset of images by class with no split of its own (a seeded one is drawn)."""
    expect_counts(root, {name: len(paths) for name, paths in per_class.items()}, official)
    entries = [
        (path, label, UNASSIGNED)
        for label, paths in enumerate(per_class.values())
        for path in paths
    ]
    return collect(root, entries, list(per_class), cfg.image_size, pattern=cfg.group_pattern)
