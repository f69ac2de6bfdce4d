"""The leakage guard: identical images that fall in two splits.

Public archives hold duplicates (BUSI is known to); one copy in train and one in test inflates the
test score. Preparation hashes each prepared image's pixels (`stream.write_images`) and reports
every set of identical images that spans splits in the manifest; `cross_split_duplicates: refuse`
makes that an error instead.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shpeft.data.registry import SPLITS
from shpeft.errors import ShpeftError

log = logging.getLogger(__name__)
#: Sets of duplicates listed by name in the manifest (all are counted).
LISTED = 20


def duplicates(
    digests: Sequence[bytes], split: np.ndarray, labels: np.ndarray, name: Callable[[int], str]
) -> dict[str, Any]:
    """Counts of identical images, and the sets that span splits (the first `LISTED` by name)."""
    by_digest: dict[bytes, list[int]] = defaultdict(list)
    for index, digest in enumerate(digests):
        by_digest[digest].append(index)
    repeated = [members for members in by_digest.values() if len(members) > 1]
    crossing = [m for m in repeated if len({int(split[i]) for i in m}) > 1]
    return {
        "duplicate_sets": len(repeated),
        "duplicate_images": sum(len(m) for m in repeated),
        "sets_across_splits": len(crossing),
        "images_across_splits": sum(len(m) for m in crossing),
        "sets_with_differing_labels": sum(len({int(labels[i]) for i in m}) > 1 for m in repeated),
        "across_splits": [
            {"images": [name(i) for i in m], "splits": [SPLITS[split[i]] for i in m]}
            for m in crossing[:LISTED]
        ],
    }


def summary(report: dict[str, Any]) -> str:
    """The sets that span splits in a sentence, naming the first ('none' without any)."""
    if not report["sets_across_splits"]:
        return "none"
    first = report["across_splits"][0]
    example = ", ".join(
        f"'{image}' ({split})"
        for image, split in zip(first["images"], first["splits"], strict=True)
    )
    return (
        f"{report['sets_across_splits']} set(s) of identical images fall in two splits "
        f"({report['images_across_splits']} images), e.g. {example}"
    )


def enforce(report: dict[str, Any], dataset: str, policy: str, origin: str) -> None:
    """Log the sets that span splits; with `policy` refuse, stop naming the first."""
    if not report["sets_across_splits"]:
        return
    text = f"{origin}: dataset '{dataset}': {summary(report)}"
    if policy == "refuse":
        raise ShpeftError(
            f"{text}; remove the copies, or set datasets.{dataset}.cross_split_duplicates: report "
            "to keep them (they are then listed in the manifest)"
        )
    log.warning("%s; listed under 'duplicates' in the manifest", text)
