"""`covid-ct`: the COVID-CT dataset of UCSD-AI4H (Zhao et al., arXiv:2003.13865, 2020).

Origin: the github.com/UCSD-AI4H/COVID-CT repository. Expected tree::

    COVID-CT/                                  <- root (the repository)
        Images-processed/
            CT_COVID/     2020.01.24.919183-p27-132.png, ... (349 images)   or CT_COVID.zip
            CT_NonCOVID/  0.jpg, 1%0.jpg, ... (397 images, .png and .jpg)   or CT_NonCOVID.zip
        Data-split/
            COVID/     trainCT_COVID.txt     valCT_COVID.txt     testCT_COVID.txt
            NonCOVID/  trainCT_NonCOVID.txt  valCT_NonCOVID.txt  testCT_NonCOVID.txt

The repository ships the images as the two zips: the folders are read where they exist, else the
zips, without unpacking them. The split lists (one file name a line) are the official
patient-level split, kept as is. File names hold `%` and reach 150 characters; they are matched
as plain strings, never decoded.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from pydantic import Field

from shpeft.data.archives import image_files, read_lines, require
from shpeft.data.files import collect
from shpeft.data.images import EXTENSIONS, ImageFile, ZipMember
from shpeft.data.registry import SPLITS, GroupedConfig, RawDataset, register_source, resolve_root
from shpeft.errors import ShpeftError

#: Class name -> the folder (and zip, and split-list) name of its images.
CLASSES = {"COVID": "CT_COVID", "NonCOVID": "CT_NonCOVID"}
IMAGES, LISTS = "Images-processed", "Data-split"


class CovidCtConfig(GroupedConfig):
    """The COVID-CT repository of UCSD-AI4H, with its official split."""

    root: str = Field(min_length=1)
    """The repository's folder, holding `Images-processed/` and `Data-split/`."""


def class_images(images: Path, folder: str) -> dict[str, ImageFile]:
    """One class's images by file name: from its folder, else from its zip."""
    if (images / folder).is_dir():
        return {path.name: path for path in image_files(images / folder)}
    archive = require(images / f"{folder}.zip", f"folder {folder}/ (or {folder}.zip)")
    try:
        with zipfile.ZipFile(archive) as handle:
            members = [m for m in handle.namelist() if not m.endswith("/")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ShpeftError(f"{archive}: not a readable zip archive ({exc})") from None
    found: dict[str, ImageFile] = {}
    for member in members:
        name = member.rsplit("/", 1)[-1]
        if member.startswith("__MACOSX/") or name.startswith("."):
            continue
        if Path(name).suffix.lower() not in EXTENSIONS:
            raise ShpeftError(f"{archive}: unexpected member '{member}' among the images")
        if name in found:
            raise ShpeftError(f"{archive}: two members named '{name}'")
        found[name] = ZipMember(archive, member)
    if not found:
        raise ShpeftError(f"{archive}: holds no image files")
    return found


def split_lists(
    root: Path, label: str, folder: str, images: dict[str, ImageFile]
) -> tuple[dict[str, int], list[Path]]:
    """Each image's split from the class's three lists, and the lists; a listed file that is
    missing, one listed twice, or an image in no list is an error naming it."""
    split_of: dict[str, int] = {}
    listings = [root / LISTS / label / f"{split}{folder}.txt" for split in SPLITS]
    for index, listing in enumerate(listings):
        for line, name in enumerate(read_lines(require(listing, "split list")), 1):
            name = name.strip()
            if not name:
                continue
            if name not in images:
                raise ShpeftError(f"{listing}:{line}: '{name}' is not among the {folder} images")
            if name in split_of:
                raise ShpeftError(f"{listing}:{line}: '{name}' is already in another split list")
            split_of[name] = index
    for name, path in images.items():
        if name not in split_of:
            raise ShpeftError(f"{path}: in none of the split lists under {root / LISTS / label}")
    return split_of, listings


def _read(cfg: CovidCtConfig) -> list[Path]:
    return [Path(cfg.root) / IMAGES, Path(cfg.root) / LISTS]


@register_source("covid-ct", CovidCtConfig, raw_inputs=_read)
def load_covid_ct(cfg: CovidCtConfig) -> RawDataset:
    """The COVID-CT repository of UCSD-AI4H: COVID and NonCOVID, official split."""
    root = resolve_root(cfg.root, "covid-ct.root")
    images = require(root / IMAGES, "folder")
    entries, lists = [], []
    for label, (name, folder) in enumerate(CLASSES.items()):
        found = class_images(images, folder)
        split_of, listings = split_lists(root, name, folder, found)
        entries += [(path, label, split_of[file]) for file, path in sorted(found.items())]
        lists += listings
    return collect(
        root, entries, list(CLASSES), cfg.image_size, lists, pattern=cfg.group_pattern, origin=root
    )
