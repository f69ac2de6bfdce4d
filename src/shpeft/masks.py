"""Hybrid masks: which k entries of the eligible backbone tensors train.

Inputs are the top-M entries per criterion (flat indices into the concatenated eligible tensors,
largest score first, from `shpeft.importance`). Two hybrid rules:

- `split`: a share `rho` of the budget goes to the task-specific top entries, the rest to the
  task-agnostic top entries not already chosen;
- `fusion`: rank-normalised scores (1 for the best entry, falling linearly to 0 past the top-M)
  are mixed as `rho * task_specific + (1 - rho) * task_agnostic`, then the top k are taken.

Two baselines are masks too: SPT's unstructured part (Sensitivity-aware tuning, He et al. 2023)
is `split` with `task_specific: grad_l2` (its sensitivity) and `rho: 1`; GPS's selection (Zhang et
al. 2024) is the rule `per_neuron`: for every output neuron (weight row), its `per_neuron` best
inputs by the task-specific criterion (`grad_l1`, GPS's gradient magnitude), so every neuron
changes. Its size is a multiple of the number of rows: `per_neuron` unset takes the budget's k
divided by the rows, rounded, at least 1.

`scope: per_layer` splits the budget over tensors in proportion to their size and applies the
rule within each tensor; `global` ranks all eligible entries together.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from shpeft.backbone import check_backbone
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, write_json

RULES = ("split", "fusion", "per_neuron")
SCOPES = ("global", "per_layer")


@dataclass
class MaskConfig:
    #: Task-specific criterion: taylor_l1 | taylor_l2 | grad_l1 | grad_l2.
    task_specific: str = "taylor_l1"
    #: Task-agnostic criterion: magnitude_l1 | magnitude_l2.
    task_agnostic: str = "magnitude_l1"
    #: split | fusion | per_neuron (GPS).
    rule: str = "split"
    #: Share of the task-specific side, in [0, 1] (1 = task-specific only, 0 = agnostic only).
    rho: float = 0.5
    #: Budget as a fraction of all backbone weights ...
    budget: float = 1e-4
    #: ... or as an absolute number of entries (overrides `budget` when set).
    budget_count: int | None = None
    scope: str = "global"
    #: Rule per_neuron: entries per output neuron (unset: matched to the budget, at least 1).
    per_neuron: int | None = None


def budget_entries(cfg: MaskConfig, backbone_params: int, eligible: int) -> int:
    """The number of entries k to train, checked against what is eligible."""
    if not 0 <= cfg.rho <= 1:
        raise ShpeftError(f"mask.rho: {cfg.rho} is outside [0, 1]")
    if cfg.rule not in RULES or cfg.scope not in SCOPES:
        raise ShpeftError(f"mask: rule must be one of {RULES} and scope one of {SCOPES}")
    k = cfg.budget_count if cfg.budget_count is not None else round(cfg.budget * backbone_params)
    if k <= 0:
        raise ShpeftError(f"mask.budget: {cfg.budget_count or cfg.budget} gives no entry to train")
    if k > eligible:
        raise ShpeftError(f"mask.budget: {k} entries asked, only {eligible} are eligible")
    return k


def _split(specific: np.ndarray, agnostic: np.ndarray, k: int, rho: float) -> np.ndarray:
    first = specific[: round(rho * k)]
    rest = agnostic[~np.isin(agnostic, first)][: k - len(first)]
    return np.concatenate([first, rest])


def _ranks(order: np.ndarray, m: int) -> dict[int, float]:
    return {int(index): 1.0 - position / m for position, index in enumerate(order)}


def _fusion(specific: np.ndarray, agnostic: np.ndarray, k: int, rho: float) -> np.ndarray:
    m = max(len(specific), len(agnostic))
    r_s, r_a = _ranks(specific, m), _ranks(agnostic, m)
    union = np.union1d(specific, agnostic)
    fused = np.array([rho * r_s.get(int(i), 0.0) + (1 - rho) * r_a.get(int(i), 0.0) for i in union])
    order = np.lexsort((union, -fused))  # best fused score first, ties to the lower index
    return union[order[:k]]


def select(
    cfg: MaskConfig, specific: np.ndarray, agnostic: np.ndarray, sizes: list[int], k: int
) -> np.ndarray:
    """Sorted flat indices of the k selected entries."""
    rule = _split if cfg.rule == "split" else _fusion
    if cfg.scope == "global":
        chosen = rule(specific, agnostic, k, cfg.rho)
    else:
        bounds = np.cumsum([0, *sizes])
        shares = np.floor(k * np.asarray(sizes) / bounds[-1]).astype(int)
        shares[np.argsort(-np.asarray(sizes), kind="stable")[: k - shares.sum()]] += 1
        parts = []
        for (low, high), share in zip(
            zip(bounds[:-1], bounds[1:], strict=True), shares, strict=True
        ):
            if share:
                inside = [order[(order >= low) & (order < high)] for order in (specific, agnostic)]
                parts.append(rule(*inside, share, cfg.rho))
        chosen = np.concatenate(parts)
    if len(chosen) < k:
        raise ShpeftError(
            f"score.top_m is too small for a budget of {k}: raise it (10x the budget)"
        )
    return np.sort(chosen)


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
    if cfg.rule == "per_neuron":
        rows = sum(shape[0] for shape in eligible)
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


def build_mask(importance_dir: str | Path, cfg: MaskConfig, out_file: str | Path) -> dict[str, Any]:
    """The `mask` step: per-tensor positions of the k entries to train, and their statistics.

    Writes `<variant>.safetensors` (one int64 tensor of flat positions per weight name; the
    backbone's sha256 and the eligible tensors' sizes in the metadata) and `<variant>.json`.
    """
    from shpeft.importance import SCORES_FILE
    from shpeft.sparse.inject import split_flat

    importance_dir, out_file = Path(importance_dir), Path(out_file)
    summary = read_json(importance_dir / "summary.json")
    sizes: dict[str, int] = summary["eligible"]
    total = sum(sizes.values())
    k = budget_entries(cfg, summary["backbone_params"], total)
    with safe_open(str(importance_dir / SCORES_FILE), framework="np") as handle:
        for criterion in (cfg.task_specific, cfg.task_agnostic):
            if f"{criterion}.indices" not in handle.keys():  # noqa: SIM118
                raise ShpeftError(f"mask: unknown criterion '{criterion}'")
        specific = handle.get_tensor(f"{cfg.task_specific}.indices")
        agnostic = handle.get_tensor(f"{cfg.task_agnostic}.indices")
        if cfg.rule == "per_neuron":
            chosen = per_neuron(handle.get_tensor(f"{cfg.task_specific}.per_row"), cfg, k)
            k = len(chosen)
        else:
            chosen = select(cfg, specific, agnostic, list(sizes.values()), k)
    selection = split_flat(chosen, sizes)
    counts = {name: len(positions) for name, positions in selection.items()}
    blocks = Counter()
    for name, count in counts.items():
        match = re.match(r"blocks\.(\d+)\.", name)
        blocks[f"block{match[1]}" if match else "other"] += count
    stats = {
        "config": asdict(cfg),
        "backbone_sha256": summary["backbone_sha256"],
        "k": k,
        "eligible": total,
        "fraction_of_backbone": k / summary["backbone_params"],
        "per_tensor": counts,
        "per_block": dict(sorted(blocks.items())),
        "overlap_at_budget": overlap(specific, agnostic, k, total),
    }
    with atomic_path(out_file) as tmp:
        save_file(
            {name: torch.from_numpy(positions) for name, positions in selection.items()},
            tmp,
            metadata={
                "backbone_sha256": summary["backbone_sha256"],
                "eligible": json.dumps(sizes),
            },
        )
    write_json(out_file.with_suffix(".json"), stats)
    return stats


@dataclass
class Mask:
    """A mask file as read back: the selected positions per tensor and what was eligible."""

    selection: dict[str, np.ndarray]
    #: Eligible tensor names and sizes, in the order flat indices use.
    eligible: dict[str, int]

    @property
    def k(self) -> int:
        return sum(len(positions) for positions in self.selection.values())


def load_mask(path: str | Path, backbone_sha256: str) -> Mask:
    """Read a mask written by `build_mask`, refusing one built for another backbone."""
    path = Path(path)
    if not path.is_file():
        raise ShpeftError(f"{path}: mask file not found (run the mask step first)")
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata() or {}
        check_backbone(path, metadata, backbone_sha256)
        selection = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    return Mask(selection, json.loads(metadata["eligible"]))
