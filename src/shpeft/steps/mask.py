"""The `mask` step: per-tensor positions of the k entries of one mask variant, and statistics
(`shpeft.selection.masks`)."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from shpeft.dag import Job
from shpeft.errors import ShpeftError
from shpeft.selection.importance import read_scores, read_summary, specific_key
from shpeft.selection.masks import (
    MaskConfig,
    Selected,
    budget_entries,
    candidate_sizes,
    overlap,
    per_neuron,
    restrict,
    select,
    split_flat,
    write_mask,
)

log = logging.getLogger(__name__)


def run(job: Job, inputs: dict[str, Path], mask: MaskConfig) -> dict[str, Any]:
    return build(inputs["importance"], mask, job.outputs["mask"])


def build(importance_dir: Path, cfg: MaskConfig, out_file: Path) -> dict[str, Any]:
    """Select the mask's entries from the scored ones; write the mask and its statistics."""
    summary = read_summary(importance_dir)
    specific_name = specific_key(cfg.task_specific, cfg.loss)
    with read_scores(importance_dir, summary["backbone_sha256"]) as scores:
        # The scored tensors in the order flat indices use (summary.json sorts its keys).
        scored: dict[str, int] = json.loads(scores.metadata["eligible"])
        sizes = candidate_sizes(cfg, scored, f"mask {out_file}")
        total = sum(sizes.values())
        k = budget_entries(cfg, summary["backbone_params"], total)
        for criterion in (specific_name, cfg.task_agnostic):
            if f"{criterion}.indices" not in scores:
                raise ShpeftError(
                    f"{scores.path}: no scores of criterion '{criterion}' (score.losses?)"
                )

        def top(key: str) -> np.ndarray:
            order = restrict(scores.get(key), scored, sizes)
            return order[order >= 0] if order.ndim == 1 else order[order[:, 0] >= 0]

        specific, agnostic = top(f"{specific_name}.indices"), top(f"{cfg.task_agnostic}.indices")
        if cfg.rule == "per_neuron":
            indices = per_neuron(top(f"{specific_name}.per_row"), cfg, k)
            k = len(indices)  # a whole number per neuron, all task-specific
            chosen = Selected(indices, k)
        else:
            chosen = select(cfg, specific, agnostic, list(sizes.values()), k)
    if cfg.rule != "per_neuron" and abs(chosen.rho - cfg.rho) > 1 / k:
        log.warning(
            "%s: %d of %d entries came from the task-specific side, rho %.4f as built (asked "
            "%s: %s)",
            out_file,
            chosen.from_specific,
            k,
            chosen.rho,
            cfg.rho,
            "rounded per tensor" if cfg.scope == "per_layer" else "fusion's ranks decide",
        )
    selection = split_flat(chosen.indices, sizes)
    counts = {name: len(positions) for name, positions in selection.items()}
    stats = {
        "config": cfg.model_dump(),
        "backbone_sha256": summary["backbone_sha256"],
        "k": k,
        "eligible": total,
        "built": {
            "rho": chosen.rho,
            "scope": cfg.scope,
            "from_task_specific": chosen.from_specific,
            "from_task_agnostic": k - chosen.from_specific,
        },
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
