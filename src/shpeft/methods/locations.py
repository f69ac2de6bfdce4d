"""Where a model's trainable backbone parameters sit: per block and layer of a ViT.

Every run records this (`locations.json` in its folder), so the figures step plots where each
method trains without rebuilding any model.
"""

from __future__ import annotations

import re
from collections import Counter

from torch import nn

from shpeft.surgery import BLOCK_LINEARS, head_names

#: Columns of the location heatmap: the targeted linear layers of a block, then anything else.
KINDS = (*(layer.removeprefix("blocks.*.") for layer in BLOCK_LINEARS), "other")
#: The block index of parameters outside the transformer blocks.
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


def to_rows(counts: Counter[tuple[int, str]]) -> list[dict[str, object]]:
    """As JSON rows `{block, layer, parameters}`, in block and layer order."""
    return [
        {"block": block, "layer": layer, "parameters": count}
        for (block, layer), count in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]


def from_rows(rows: list[dict[str, object]]) -> Counter[tuple[int, str]]:
    return Counter({(int(r["block"]), str(r["layer"])): int(r["parameters"]) for r in rows})
