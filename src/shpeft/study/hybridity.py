"""Where the key weights (the entries full fine-tuning changed most) lie against the two
importance estimates' top sets, each share beside the share a random set would have.

Every set is a sorted array of flat indices into the candidate tensors' concatenation (model
order). The task-specific and task-agnostic top sets hold as many entries as the key weights, so
under chance (key weights drawn uniformly from the N candidates) the share in either is k / N,
the share in both |S & A| / N, and in neither 1 - |S | A| / N. Per layer type and depth the same
shares are taken within the group, against the group's own chance.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from shpeft.selection.masks import overlap

#: The regions of the two top sets a key weight may fall in.
REGIONS = (
    "task-specific",
    "task-agnostic",
    "both",
    "task-specific only",
    "task-agnostic only",
    "neither",
)
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")


def layer_of(name: str) -> tuple[str, str]:
    """(layer type, depth) of a tensor: `blocks.3.attn.qkv.weight` is (qkv, 3); a tensor
    outside the blocks is its own type at depth `-`."""
    found = _BLOCK.fullmatch(name)
    inner, depth = (found[2], found[1]) if found else (name, "-")
    inner = re.sub(r"^(attn|mlp)\.", "", inner).removesuffix(".weight")
    return inner, depth


def region_masks(entries: np.ndarray, specific: np.ndarray, agnostic: np.ndarray) -> dict:
    """Per region, which of `entries` fall in it (boolean arrays)."""
    s, a = np.isin(entries, specific), np.isin(entries, agnostic)
    return {
        "task-specific": s,
        "task-agnostic": a,
        "both": s & a,
        "task-specific only": s & ~a,
        "task-agnostic only": a & ~s,
        "neither": ~s & ~a,
    }


def shares(
    key: np.ndarray,
    specific: np.ndarray,
    agnostic: np.ndarray,
    within: list[tuple[int, int]],
) -> dict[str, tuple[float, float]]:
    """Per region, the share of `key` in it, and its chance: the share of the entries `key`
    was drawn from (the flat ranges `within`) that lie in it."""
    found = region_masks(key, specific, agnostic)
    size = sum(high - low for low, high in within)

    def count(values: np.ndarray) -> int:
        return sum(
            int(np.searchsorted(values, high) - np.searchsorted(values, low))
            for low, high in within
        )

    s, a = count(specific) / size, count(agnostic) / size
    both = count(np.intersect1d(specific, agnostic)) / size
    chance = {
        "task-specific": s,
        "task-agnostic": a,
        "both": both,
        "task-specific only": s - both,
        "task-agnostic only": a - both,
        "neither": 1 - s - a + both,
    }
    return {r: (_mean(found[r]), chance[r]) for r in REGIONS}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def region_table(
    key: np.ndarray, specific: np.ndarray, agnostic: np.ndarray, total: int
) -> pd.DataFrame:
    """The key weights' share per region, its chance and their ratio."""
    return pd.DataFrame(
        {"region": region, "share": share, "chance": chance, "ratio": _ratio(share, chance)}
        for region, (share, chance) in shares(key, specific, agnostic, [(0, total)]).items()
    )


def _ratio(value: float, chance: float) -> float:
    return value / chance if chance else float("nan")


def overlap_table(sets: dict[str, np.ndarray], total: int) -> pd.DataFrame:
    """Jaccard overlaps of every pair of the named sets (as large as each other), against the
    overlap of random sets of that size (`shpeft.selection.masks.overlap`)."""
    names = list(sets)
    rows = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            found = overlap(sets[first], sets[second], len(sets[first]), total)
            value, chance = found["jaccard"], found["jaccard_chance"]
            rows.append(
                {
                    "pair": f"{first} / {second}",
                    "jaccard": value,
                    "chance": chance,
                    "ratio": _ratio(value, chance),
                }
            )
    return pd.DataFrame(rows)


def groups(sizes: dict[str, int]) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Per (layer type, depth), the flat ranges of its tensors among `sizes` (model order)."""
    found: dict[tuple[str, str], list[tuple[int, int]]] = {}
    start = 0
    for name, size in sizes.items():
        found.setdefault(layer_of(name), []).append((start, start + size))
        start += size
    return found


def layer_table(
    key: np.ndarray, specific: np.ndarray, agnostic: np.ndarray, sizes: dict[str, int]
) -> pd.DataFrame:
    """Per layer type and depth: its entries, its key weights (their density against the
    overall one) and their shares per region against the group's chance."""
    density = len(key) / sum(sizes.values())
    rows = []
    for (layer, depth), ranges in groups(sizes).items():
        entries = sum(high - low for low, high in ranges)
        inside = key[np.any([(key >= low) & (key < high) for low, high in ranges], axis=0)]
        row = {
            "layer": layer,
            "depth": depth,
            "entries": entries,
            "key": len(inside),
            "key density ratio": len(inside) / entries / density,
        }
        for region, (share, chance) in shares(inside, specific, agnostic, ranges).items():
            if region in ("task-specific", "task-agnostic", "both", "neither"):
                row[region], row[f"{region} chance"] = share, chance
        rows.append(row)
    return pd.DataFrame(rows)


def flat_positions(
    selection: dict[str, np.ndarray], sizes: dict[str, int]
) -> tuple[np.ndarray, int]:
    """A per-tensor selection as sorted flat indices into the `sizes` tensors' concatenation,
    and how many of its entries lie in other tensors."""
    starts = dict(zip(sizes, np.cumsum([0, *sizes.values()])[:-1], strict=False))
    inside = [np.asarray(p, np.int64) + starts[n] for n, p in selection.items() if n in starts]
    outside = sum(len(p) for n, p in selection.items() if n not in starts)
    flat = np.sort(np.concatenate(inside)) if inside else np.zeros(0, np.int64)
    return flat, outside


def layer_mix(entries: np.ndarray, sizes: dict[str, int]) -> dict[str, float]:
    """The share of `entries` per layer type (depths together)."""
    mix: dict[str, float] = {}
    for (layer, _), ranges in groups(sizes).items():
        inside = sum(
            int(np.searchsorted(entries, h) - np.searchsorted(entries, lo)) for lo, h in ranges
        )
        mix[layer] = mix.get(layer, 0.0) + inside / max(len(entries), 1)
    return mix


def mask_table(
    selections: dict[str, dict[str, np.ndarray]],
    key: np.ndarray,
    specific: np.ndarray,
    agnostic: np.ndarray,
    sizes: dict[str, int],
) -> pd.DataFrame:
    """Per sparse run's selection, against the key weights: the share of its entries that are
    key weights (chance: the key weights' density), the share of the key weights it holds
    (chance: its own density), its shares in the two top sets, and its mix of layer types; the
    key weights' own row first."""
    total = sum(sizes.values())

    def row(name: str, flat: np.ndarray, outside: int) -> dict:
        regions = region_masks(flat, specific, agnostic)
        hits = len(np.intersect1d(flat, key))
        return {
            "selection": name,
            "entries": len(flat) + outside,
            "outside candidates": outside,
            "key weights": _mean(np.isin(flat, key)),
            "key chance": len(key) / total,
            "key covered": hits / len(key),
            "covered chance": len(flat) / total,
            "task-specific": _mean(regions["task-specific"]),
            "task-agnostic": _mean(regions["task-agnostic"]),
            **{f"in {layer}": share for layer, share in layer_mix(flat, sizes).items()},
        }

    rows = [row("key weights", key, 0)]
    for name, selection in selections.items():
        rows.append(row(name, *flat_positions(selection, sizes)))
    return pd.DataFrame(rows)
