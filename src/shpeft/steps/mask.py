"""The `mask` step: per-tensor positions of the k entries of one mask variant, and statistics."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from shpeft.dag import Job
from shpeft.errors import ShpeftError
from shpeft.selection.importance import read_scores, read_summary
from shpeft.selection.masks import (
    MaskConfig,
    budget_entries,
    overlap,
    per_neuron,
    select,
    split_flat,
    write_mask,
)


def run(job: Job, inputs: dict[str, Path], mask: MaskConfig) -> dict[str, Any]:
    return build(inputs["importance"], mask, job.outputs["mask"])


def build(importance_dir: Path, cfg: MaskConfig, out_file: Path) -> dict[str, Any]:
    """Select the mask's entries from the scored ones; write the mask and its statistics."""
    summary = read_summary(importance_dir)
    sizes: dict[str, int] = summary["eligible"]
    total = sum(sizes.values())
    k = budget_entries(cfg, summary["backbone_params"], total)
    with read_scores(importance_dir, summary["backbone_sha256"]) as scores:
        for criterion in (cfg.task_specific, cfg.task_agnostic):
            if f"{criterion}.indices" not in scores:
                raise ShpeftError(f"{scores.path}: no scores of criterion '{criterion}'")
        specific = scores.get(f"{cfg.task_specific}.indices")
        agnostic = scores.get(f"{cfg.task_agnostic}.indices")
        if cfg.rule == "per_neuron":
            chosen = per_neuron(scores.get(f"{cfg.task_specific}.per_row"), cfg, k)
            k = len(chosen)
        else:
            chosen = select(cfg, specific, agnostic, list(sizes.values()), k)
    selection = split_flat(chosen, sizes)
    counts = {name: len(positions) for name, positions in selection.items()}
    stats = {
        "config": cfg.model_dump(),
        "backbone_sha256": summary["backbone_sha256"],
        "k": k,
        "eligible": total,
        "fraction_of_backbone": k / summary["backbone_params"],
        "per_tensor": counts,
        "per_block": per_block(counts),
        "overlap_at_budget": overlap(specific, agnostic, k, total),
    }
    write_mask(out_file, selection, sizes, stats)
    return stats


def per_block(counts: dict[str, int]) -> dict[str, int]:
    blocks: Counter[str] = Counter()
    for name, count in counts.items():
        match = re.match(r"blocks\.(\d+)\.", name)
        blocks[f"block{match[1]}" if match else "other"] += count
    return dict(sorted(blocks.items()))
