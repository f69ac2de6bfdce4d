"""Hybrid masks: which k entries of the eligible backbone tensors train.

Inputs are the top-M entries per criterion (flat indices into the concatenated eligible tensors,
largest score first, from `shpeft.selection.importance`), restricted to the variant's
`candidates` (the block matrices unless it says otherwise). Two hybrid rules:

- `split`: a share `rho` of the budget goes to the task-specific top entries, the rest to the
  task-agnostic top entries not already chosen;
- `fusion`: rank-normalised scores (1 for the best entry, falling linearly to 0 past the top-M)
  are mixed as `rho * task_specific + (1 - rho) * task_agnostic`, then the top k are taken.

Two baselines are masks too: SPT's sensitive entries (Sensitivity-aware tuning, He et al. 2023)
are `split` with `task_specific: grad_l2` (its sensitivity) and `rho: 1`; GPS's selection (Zhang et
al. 2024) is the rule `per_neuron`: for every output neuron (weight row), its `per_neuron` best
inputs by the task-specific criterion (`grad_sum` under the `supcon` loss, GPS's accumulated
gradient), so every neuron changes. Its size is a multiple of the number of rows: `per_neuron`
unset takes the budget's k divided by the rows, rounded, at least 1.

`scope: per_layer` splits the budget over tensors in proportion to their size and applies the
rule within each tensor; `global` ranks all candidate entries together. Every mask records what
it is as built: its k, its share of the backbone, the share `rho` of its entries that came from
the task-specific side (which rounding per tensor moves under `per_layer`), and the overlap of
the two sides' top sets against the overlap of random sets.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from shpeft import bound, paths
from shpeft.config import Section
from shpeft.errors import ShpeftError
from shpeft.fileio import write_json
from shpeft.selection.importance import BLOCK_WEIGHTS, ScoringLoss, TaskAgnostic, TaskSpecific


class MaskConfig(Section):
    """One mask variant: which criteria, which hybrid rule, how many entries."""

    task_specific: TaskSpecific = "grad_sum"
    """Task-specific criterion: a pure gradient signal (`grad_sum`, `grad_l1`, `grad_l2`) or a
    Taylor estimate, which also carries |w| (`taylor_l1`, `taylor_l2`)."""
    loss: ScoringLoss = "cross_entropy"
    """Scoring loss whose gradients the task-specific criterion reads (one of `score.losses`)."""
    task_agnostic: TaskAgnostic = "magnitude_l1"
    """Task-agnostic criterion (the pretrained weights alone)."""
    rule: Literal["split", "fusion", "per_neuron"] = "split"
    """`split`: a share rho of the budget to each side's top entries; `fusion`: the top k of
    mixed rank-normalised scores; `per_neuron`: every output neuron's best inputs (GPS)."""
    rho: float = Field(0.5, ge=0, le=1)
    """Share of the task-specific side (1: task-specific only, 0: task-agnostic only)."""
    budget: float = Field(1e-4, gt=0, le=1)
    """Budget as a fraction of all backbone weights (the paper's 1e-4: about 0.01%) ..."""
    budget_count: int | None = Field(None, ge=1)
    """... or as an absolute number of entries (overrides `budget` when set)."""
    scope: Literal["global", "per_layer"] = "global"
    """`global`: one ranking over all eligible entries; `per_layer`: the budget shared in
    proportion to tensor size, the rule applied within each tensor."""
    per_neuron: int | None = Field(None, ge=1)
    """Rule per_neuron: entries per output neuron (unset: matched to the budget, at least 1)."""
    candidates: list[str] = Field(default_factory=lambda: list(BLOCK_WEIGHTS), min_length=1)
    """Glob patterns of the scored tensors (`score.eligible`) this variant selects among."""


#: Per weight tensor name, the flat positions (within that tensor) of the entries that train.
Selection = dict[str, np.ndarray]


def split_flat(flat: np.ndarray, sizes: dict[str, int]) -> Selection:
    """Split indices into the concatenation of tensors (in `sizes` order) into per-tensor ones."""
    bounds = np.cumsum([0, *sizes.values()])
    flat = np.sort(np.asarray(flat, dtype=np.int64))
    return {
        name: flat[(flat >= low) & (flat < high)] - low
        for name, low, high in zip(sizes, bounds[:-1], bounds[1:], strict=True)
        if np.any((flat >= low) & (flat < high))
    }


def budget_entries(cfg: MaskConfig, backbone_params: int, eligible: int) -> int:
    """The number of entries k to train, checked against what is eligible."""
    k = cfg.budget_count if cfg.budget_count is not None else round(cfg.budget * backbone_params)
    if k <= 0:
        raise ShpeftError(f"mask.budget: {cfg.budget_count or cfg.budget} gives no entry to train")
    if k > eligible:
        raise ShpeftError(f"mask.budget: {k} entries asked, only {eligible} are eligible")
    return k


def _split(
    specific: np.ndarray, agnostic: np.ndarray, k: int, rho: float
) -> tuple[np.ndarray, int]:
    first = specific[: round(rho * k)]
    rest = agnostic[~np.isin(agnostic, first)][: k - len(first)]
    return np.concatenate([first, rest]), len(first)


def _ranks(order: np.ndarray, m: int) -> dict[int, float]:
    return {int(index): 1.0 - position / m for position, index in enumerate(order)}


def _fusion(
    specific: np.ndarray, agnostic: np.ndarray, k: int, rho: float
) -> tuple[np.ndarray, int]:
    """The top k of the mixed scores; an entry counts as task-specific where that side's term of
    its mixed score is the larger."""
    m = max(len(specific), len(agnostic))
    r_s, r_a = _ranks(specific, m), _ranks(agnostic, m)
    union = np.union1d(specific, agnostic)
    side_s = np.array([rho * r_s.get(int(i), 0.0) for i in union])
    side_a = np.array([(1 - rho) * r_a.get(int(i), 0.0) for i in union])
    # Best mixed score first, ties to the lower index.
    order = np.lexsort((union, -(side_s + side_a)))[:k]
    return union[order], int(np.sum(side_s[order] >= side_a[order]))


@dataclass
class Selected:
    """A rule's choice: sorted flat indices, and how many came from the task-specific side."""

    indices: np.ndarray
    from_specific: int

    @property
    def rho(self) -> float:
        return self.from_specific / len(self.indices)


def select(
    cfg: MaskConfig, specific: np.ndarray, agnostic: np.ndarray, sizes: list[int], k: int
) -> Selected:
    """The k selected entries (flat indices into the tensors of `sizes`, concatenated)."""
    rule = _split if cfg.rule == "split" else _fusion
    if cfg.scope == "global":
        chosen, from_specific = rule(specific, agnostic, k, cfg.rho)
    else:
        bounds = np.cumsum([0, *sizes])
        shares = np.floor(k * np.asarray(sizes) / bounds[-1]).astype(int)
        shares[np.argsort(-np.asarray(sizes), kind="stable")[: k - shares.sum()]] += 1
        parts, from_specific = [], 0
        for (low, high), share in zip(
            zip(bounds[:-1], bounds[1:], strict=True), shares, strict=True
        ):
            if share:
                inside = [order[(order >= low) & (order < high)] for order in (specific, agnostic)]
                part, taken = rule(*inside, share, cfg.rho)
                parts.append(part)
                from_specific += taken
        chosen = np.concatenate(parts)
    if len(chosen) < k:
        raise ShpeftError(
            f"score.top_m is too small for a budget of {k}: raise it (10x the budget)"
        )
    return Selected(np.sort(chosen), from_specific)


def candidate_sizes(
    cfg: MaskConfig, eligible: dict[str, int], what: str = "masks"
) -> dict[str, int]:
    """The scored tensors (name: size, in scoring order) that the variant's `candidates` match
    (`what`: the variant, for the message)."""
    kept = {
        name: size
        for name, size in eligible.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in cfg.candidates)
    }
    if not kept:
        raise ShpeftError(
            f"{what}: candidates {cfg.candidates} match no scored tensor (score.eligible scores "
            f"{', '.join(list(eligible)[:3])}, ...)"
        )
    return kept


def restrict(flat: np.ndarray, eligible: dict[str, int], kept: dict[str, int]) -> np.ndarray:
    """Flat indices into the eligible tensors' concatenation as indices into the kept tensors'
    (same shape; -1 where an index lies outside them)."""
    starts = np.cumsum([0, *eligible.values()])[:-1]
    new_starts = dict(zip(kept, np.cumsum([0, *kept.values()])[:-1], strict=True))
    inside = np.array([name in kept for name in eligible])
    shift = np.array(
        [new_starts.get(n, 0) - start for n, start in zip(eligible, starts, strict=True)]
    )
    tensor = np.searchsorted(starts, flat, side="right") - 1
    return np.where(inside[tensor], flat + shift[tensor], -1)


def per_neuron_k(cfg: MaskConfig, k: int, rows: int) -> int:
    """GPS's entries per neuron: `cfg.per_neuron`, else k over the rows (at least 1)."""
    return cfg.per_neuron if cfg.per_neuron is not None else max(1, round(k / rows))


def per_neuron(per_row: np.ndarray, cfg: MaskConfig, k: int) -> np.ndarray:
    """GPS: the best entries of every row, as many per row as `per_neuron_k` says."""
    rows, kept = per_row.shape
    per_row_k = per_neuron_k(cfg, k, rows)
    if not 1 <= per_row_k <= kept:
        raise ShpeftError(
            f"mask.per_neuron: {per_row_k} entries per neuron asked, the score step kept "
            f"{kept} (raise score.per_row)"
        )
    return np.sort(per_row[:, :per_row_k].reshape(-1))


def planned_entries(cfg: MaskConfig, backbone_params: int, eligible: list[torch.Size]) -> int:
    """The k a mask will hold on a backbone, from the shapes of its eligible tensors alone."""
    k = budget_entries(cfg, backbone_params, sum(shape.numel() for shape in eligible))
    if cfg.rule == "per_neuron":  # a vector is one row, as the score step's `top_per_row` has it
        rows = sum(shape[0] if len(shape) > 1 else 1 for shape in eligible)
        return rows * per_neuron_k(cfg, k, rows)
    return k


def random_selection(total: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(total, size=k, replace=False))


def overlap(specific: np.ndarray, agnostic: np.ndarray, k: int, total: int) -> dict[str, float]:
    """Jaccard overlap of the two top-k sets, and its expectation for two random k-subsets."""
    shared = len(np.intersect1d(specific[:k], agnostic[:k]))
    expected_shared = k * k / total
    return {
        "jaccard": shared / (2 * k - shared),
        "jaccard_chance": expected_shared / (2 * k - expected_shared),
        "shared": shared,
    }


@dataclass
class Mask:
    """A mask file as read back: the selected positions per tensor and what was eligible."""

    selection: Selection
    #: Eligible tensor names and sizes, in the order flat indices use.
    eligible: dict[str, int]
    #: The mask variant's settings it was built with (recorded by every run trained on it).
    config: dict[str, Any]

    @property
    def k(self) -> int:
        return sum(len(positions) for positions in self.selection.values())


def write_mask(
    out_file: Path, selection: Selection, eligible: dict[str, int], stats: dict[str, Any]
) -> None:
    """`<variant>.safetensors` (flat positions per weight tensor, bound to the backbone, with the
    eligible tensors' sizes) and `<variant>.json` (its statistics)."""
    tensors = {name: torch.from_numpy(positions) for name, positions in selection.items()}
    bound.write(
        out_file,
        tensors,
        stats["backbone_sha256"],
        eligible=json.dumps(eligible),
        config=json.dumps(stats["config"]),
    )
    write_json(paths.stats_of(out_file), stats)


def load_mask(path: str | Path, backbone_sha256: str) -> Mask:
    """Read a mask written by `write_mask`, refusing one built for another backbone."""
    with bound.read(path, backbone_sha256, framework="np", what="mask file") as reader:
        metadata = reader.metadata
        return Mask(reader.all(), json.loads(metadata["eligible"]), json.loads(metadata["config"]))
