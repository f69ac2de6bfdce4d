"""The `oracle` step: the mask of the entries one full fine-tuning run changed most, at the
budget and among the candidates of `study.mask`, for `sparse-oracle` to train with hindsight."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shpeft.dag import Job
from shpeft.selection.masks import (
    MaskConfig,
    budget_entries,
    candidate_sizes,
    split_flat,
    write_mask,
)
from shpeft.steps.mask import per_block
from shpeft.study.change import load_fine_tuning, top_positions
from shpeft.study.config import StudyConfig

log = logging.getLogger(__name__)


def run(job: Job, inputs: dict[str, Path], study: StudyConfig, mask: MaskConfig) -> dict[str, Any]:
    return build(inputs["run"], inputs["backbone"], study, mask, job.outputs["mask"])


def build(
    run_dir: Path, backbone_dir: Path, study: StudyConfig, mask: MaskConfig, out_file: Path
) -> dict[str, Any]:
    tuned = load_fine_tuning(run_dir, backbone_dir)
    sizes = oracle_candidates(tuned.tensors(["*"], "backbone"), study, mask)
    total = sum(sizes.values())
    k = budget_entries(mask, tuned.backbone.num_params, total)
    change = tuned.change(list(sizes))
    chosen = top_positions(change, k)
    selection = split_flat(chosen, sizes)
    counts = {name: len(positions) for name, positions in selection.items()}
    stats = {
        "config": {
            "rule": "oracle",
            "of": study.mask,
            "run": str(run_dir),
            **mask.model_dump(include={"budget", "budget_count", "candidates"}),
        },
        "backbone_sha256": tuned.backbone.sha256,
        "k": k,
        "eligible": total,
        "fraction_of_backbone": k / tuned.backbone.num_params,
        "change_held": float(change[chosen].sum() / change.sum()),
        "per_tensor": counts,
        "per_block": per_block(counts),
    }
    write_mask(out_file, selection, sizes, stats)
    log.info(
        "%s: the %d entries changed most hold %.3f of the change", out_file, k, stats["change_held"]
    )
    return stats


def oracle_candidates(
    backbone: dict[str, int], study: StudyConfig, mask: MaskConfig
) -> dict[str, int]:
    """The tensors the key weights and the oracle are drawn from: `study.mask`'s candidates."""
    return candidate_sizes(mask, backbone, f"masks.{study.mask}")
