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


def grouped_assign(
    labels: np.ndarray,
    groups: np.ndarray,
    candidates: np.ndarray,
    fractions: Mapping[int, float],
    seed: int,
) -> dict[int, np.ndarray]:
    """Draw the given fractions of `candidates` into new splits, whole groups at a time and
    stratified by class as far as the groups allow (scikit-learn's StratifiedGroupKFold: each
    split takes one fold of about its fraction from what is left)."""
    from sklearn.model_selection import StratifiedGroupKFold

    chosen, left = {}, np.asarray(candidates)
    for split, fraction in fractions.items():
        share = fraction / max(1e-12, len(left) / len(candidates))
        folds = min(max(2, round(1 / share)), len(np.unique(groups[left])))
        if fraction <= 0 or folds < 2:
            chosen[split] = left[:0]
            continue
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, fold = next(splitter.split(left, labels[left], groups[left]))
        chosen[split], left = np.sort(left[fold]), np.delete(left, fold)
    return chosen


def draw(raw: RawDataset, candidates: np.ndarray, fractions: Mapping[int, float], seed: int):
    """Stratified draws by image, or by group where the source names groups."""
    if raw.groups is None:
        return stratified_assign(raw.labels, candidates, fractions, seed)
    return grouped_assign(raw.labels, raw.groups, candidates, fractions, seed)


def finalise_split(raw: RawDataset, val_fraction: float, test_fraction: float, seed: int) -> str:
    """Fill unassigned entries (and a missing val or test split) by a seeded stratified split,
    by group where the source names them (`RawDataset.groups`)."""
    origin = raw.split_origin
    kind = "stratified" if raw.groups is None else f"stratified by group ({raw.grouping})"
    unassigned = np.flatnonzero(raw.split == UNASSIGNED)
    if len(unassigned):
        drawn = draw(raw, unassigned, {VAL: val_fraction, TEST: test_fraction}, seed)
        raw.split[unassigned] = TRAIN
        for split, index in drawn.items():
            raw.split[index] = split
        origin = f"{kind} (seed {seed}, val {val_fraction}, test {test_fraction})"
    for split, fraction in ((VAL, val_fraction), (TEST, test_fraction)):
        if not np.any(raw.split == split):
            train = np.flatnonzero(raw.split == TRAIN)
            raw.split[draw(raw, train, {split: fraction}, seed)[split]] = split
            origin += f"; {SPLITS[split]} drawn from train, {kind} (seed {seed}, {fraction})"
    return origin


def group_counts(raw: RawDataset) -> dict[str, int] | None:
    """Groups per split (None where the source names none)."""
    if raw.groups is None:
        return None
    return {name: len(np.unique(raw.groups[raw.split == i])) for i, name in enumerate(SPLITS)}


def check(raw: RawDataset, name: str) -> None:
    n = len(raw.images)  # their dtype and shape are checked as they are written
    if len(raw.labels) != n or len(raw.split) != n:
        raise ShpeftError(f"{raw.origin}: dataset '{name}': {n} images, {len(raw.labels)} labels")
    bad = np.flatnonzero((raw.labels < 0) | (raw.labels >= len(raw.class_names)))
    if len(bad):
        raise ShpeftError(
            f"{raw.origin}: dataset '{name}': label {int(raw.labels[bad[0]])} at index "
            f"{int(bad[0])} is outside the class list 0..{len(raw.class_names) - 1} "
            f"{raw.class_names}"
        )
    if raw.groups is not None:
        _check_groups(raw, name)
    for index, split in enumerate(SPLITS):
        present = set(np.unique(raw.labels[raw.split == index]).tolist())
        missing = [raw.class_names[c] for c in range(len(raw.class_names)) if c not in present]
        if missing:
            raise ShpeftError(
                f"{raw.origin}: dataset '{name}': split '{split}' has no example of "
                f"class(es) {missing}"
            )


def _check_groups(raw: RawDataset, name: str) -> None:
    """No patient or lesion in two splits: a leak from training into evaluation."""
    if len(raw.groups) != len(raw.labels):
        raise ShpeftError(
            f"{raw.origin}: dataset '{name}': {len(raw.groups)} groups, one per image"
        )
    for group in np.unique(raw.groups):
        found = sorted({SPLITS[s] for s in raw.split[raw.groups == group]})
        if len(found) > 1:
            raise ShpeftError(
                f"{raw.origin}: dataset '{name}': group '{group}' ({raw.grouping}) is in "
                f"{' and '.join(found)}: its images would leak between splits"
            )


def counts(raw: RawDataset) -> dict[str, dict[str, int]]:
    return {
        split: {
            cls: int(np.sum((raw.split == index) & (raw.labels == c)))
            for c, cls in enumerate(raw.class_names)
        }
        for index, split in enumerate(SPLITS)
    }
