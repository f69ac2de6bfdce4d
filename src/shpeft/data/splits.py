"""Splits of a dataset: a seeded stratified split where the source has none, and the checks that
every split holds every class and every label is in the class list."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from shpeft.data.registry import SPLITS, TEST, TRAIN, UNASSIGNED, VAL, RawDataset
from shpeft.errors import ShpeftError


def stratified_assign(
    labels: np.ndarray, candidates: np.ndarray, fractions: Mapping[int, float], seed: int
) -> dict[int, np.ndarray]:
    """Draw, per class, the given fractions of `candidates` (indices) into new splits."""
    rng = np.random.default_rng(seed)
    chosen: dict[int, list[np.ndarray]] = {split: [] for split in fractions}
    for label in np.unique(labels[candidates]):
        members = rng.permutation(candidates[labels[candidates] == label])
        start = 0
        for split, fraction in fractions.items():
            count = int(round(fraction * len(members)))
            if fraction > 0 and len(members) >= len(fractions) + 1:
                count = max(count, 1)
            chosen[split].append(members[start : start + count])
            start += count
    return {split: np.sort(np.concatenate(parts)) for split, parts in chosen.items()}


def finalise_split(raw: RawDataset, val_fraction: float, test_fraction: float, seed: int) -> str:
    """Fill unassigned entries (and a missing val or test split) by a seeded stratified split."""
    origin = raw.split_origin
    unassigned = np.flatnonzero(raw.split == UNASSIGNED)
    if len(unassigned):
        drawn = stratified_assign(
            raw.labels, unassigned, {VAL: val_fraction, TEST: test_fraction}, seed
        )
        raw.split[unassigned] = TRAIN
        for split, index in drawn.items():
            raw.split[index] = split
        origin = f"stratified (seed {seed}, val {val_fraction}, test {test_fraction})"
    for split, fraction in ((VAL, val_fraction), (TEST, test_fraction)):
        if not np.any(raw.split == split):
            train = np.flatnonzero(raw.split == TRAIN)
            raw.split[stratified_assign(raw.labels, train, {split: fraction}, seed)[split]] = split
            origin += f"; {SPLITS[split]} drawn from train (seed {seed}, fraction {fraction})"
    return origin


def check(raw: RawDataset, name: str) -> None:
    n = len(raw.images)
    if raw.images.dtype != np.uint8 or raw.images.ndim != 4 or raw.images.shape[-1] != 3:
        raise ShpeftError(
            f"{raw.origin}: dataset '{name}': images must be (N, S, S, 3) uint8, "
            f"got {raw.images.shape}"
        )
    if len(raw.labels) != n or len(raw.split) != n:
        raise ShpeftError(f"{raw.origin}: dataset '{name}': {n} images, {len(raw.labels)} labels")
    bad = np.flatnonzero((raw.labels < 0) | (raw.labels >= len(raw.class_names)))
    if len(bad):
        raise ShpeftError(
            f"{raw.origin}: dataset '{name}': label {int(raw.labels[bad[0]])} at index "
            f"{int(bad[0])} is outside the class list 0..{len(raw.class_names) - 1} "
            f"{raw.class_names}"
        )
    for index, split in enumerate(SPLITS):
        present = set(np.unique(raw.labels[raw.split == index]).tolist())
        missing = [raw.class_names[c] for c in range(len(raw.class_names)) if c not in present]
        if missing:
            raise ShpeftError(
                f"{raw.origin}: dataset '{name}': split '{split}' has no example of "
                f"class(es) {missing}"
            )


def counts(raw: RawDataset) -> dict[str, dict[str, int]]:
    return {
        split: {
            cls: int(np.sum((raw.split == index) & (raw.labels == c)))
            for c, cls in enumerate(raw.class_names)
        }
        for index, split in enumerate(SPLITS)
    }
