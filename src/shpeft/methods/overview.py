"""What each method of the grid trains on a given backbone: `shpeft methods` and the README table.

Counts come from each method's formula over the backbone's shapes (and, for sparse methods, from
their mask variant's budget), so the table needs no data, no training and no pretrained weights:
a randomly initialised ViT-B/16 has the shapes of the real one.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from torch import nn

from shpeft.importance import ScoreConfig, eligible_parameters
from shpeft.masks import MaskConfig, planned_entries
from shpeft.methods.registry import RunContext, create_method, head_names
from shpeft.params import build, run_methods


def overview(params: dict[str, Any], model: nn.Module) -> list[dict[str, Any]]:
    """One row per method of the grid: kind, reference, what trains, trainable count, fraction."""
    head = head_names(model)
    backbone = sum(p.numel() for n, p in model.named_parameters() if n not in head)
    eligible = eligible_parameters(model, build(ScoreConfig, params.get("score", {})).eligible)
    shapes = [param.shape for param in eligible.values()]
    ctx = RunContext("overview", 0, {})
    rows = []
    for name in run_methods(params):
        entry = params["methods"][name]
        method = create_method(entry)
        trains = method.trains
        if "mask" in entry:
            mask = build(MaskConfig, params["masks"][entry["mask"]])
            count = planned_entries(mask, backbone, shapes)
            trains += f" (mask '{entry['mask']}': {_describe(mask)})"
        else:
            count = method.formula(model, ctx)
        rows.append(
            {
                "method": name,
                "kind": entry["kind"],
                "reference": method.reference,
                "trains (besides the head)": trains,
                "trainable": count,
                "fraction": count / backbone,
            }
        )
    return rows


#: Columns of the location heatmap: the eligible linear layers of a block, then anything else.
KINDS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "other")
OUTSIDE = -1
_LOCATION = re.compile(rf"blocks\.(\d+)\.(?:({'|'.join(map(re.escape, KINDS[:-1]))})\.)?")


def locations(model: nn.Module) -> Counter[tuple[int, str]]:
    """Trainable backbone parameters per (block, kind); block -1 is outside the blocks.

    A parameter belongs to the block and layer its name sits under (an injected LoRA matrix,
    sparse delta or SSF scale under `blocks.3.attn.qkv` counts there). VPT-deep's prompts are one
    tensor with a row per block, so they are split by row.
    """
    head = head_names(model)
    counts: Counter[tuple[int, str]] = Counter()
    for name, param in model.named_parameters():
        if not param.requires_grad or name in head:
            continue
        if name.endswith("prompts") and param.ndim == 3 and param.shape[0] > 1:
            for block in range(param.shape[0]):
                counts[block, "other"] += param[block].numel()
            continue
        found = _LOCATION.match(name)
        if found is None:
            counts[OUTSIDE, "other"] += param.numel()
        else:
            counts[int(found[1]), found[2] or "other"] += param.numel()
    return counts


def _describe(mask: MaskConfig) -> str:
    if mask.rule == "per_neuron":
        return f"per_neuron, {mask.task_specific}"
    if mask.rho in (0, 1):
        return mask.task_specific if mask.rho == 1 else mask.task_agnostic
    return f"{mask.rule} {mask.task_specific} / {mask.task_agnostic}, rho {mask.rho}"
