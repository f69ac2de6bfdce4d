"""What each method of the grid trains on a given backbone: `shpeft methods` and the README table.

Counts come from each method's formula over the backbone's shapes (and, for sparse methods, from
their mask variant's budget), so the table needs no data, no training and no pretrained weights:
a randomly initialised ViT-B/16 has the shapes of the real one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from shpeft.backbone.config import BackboneConfig
from shpeft.backbone.weights import create
from shpeft.errors import ShpeftError
from shpeft.methods.registry import RunContext, create_method
from shpeft.selection.importance import eligible_parameters
from shpeft.selection.masks import MaskConfig, candidate_sizes, planned_entries
from shpeft.surgery import backbone_parameters

if TYPE_CHECKING:
    from shpeft.params import Params


def overview_model(backbone: BackboneConfig, model: str | None, model_args: dict | None):
    """The randomly initialised backbone to count on: `backbone`, or another timm model."""
    cfg = backbone.model_copy(
        update={
            **({"model": model} if model else {}),
            **({"model_args": model_args} if model_args is not None else {}),
        }
    )
    try:
        return cfg, create(cfg, num_classes=2)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ShpeftError(f"--model {cfg.model}: cannot build it ({exc})") from None


def overview(params: Params, model: nn.Module) -> list[dict[str, Any]]:
    """One row per method of the grid: kind, reference, what trains, trainable count, fraction."""
    backbone = sum(p.numel() for p in backbone_parameters(model).values())
    scored = eligible_parameters(model, params.score.eligible)
    ctx = RunContext("overview", 0, None)
    rows = []
    for name in params.grid.methods:
        cfg = params.methods[name]
        method = create_method(cfg)
        trains = method.trains
        if getattr(cfg, "mask", None) is not None:
            mask = params.masks[cfg.mask]
            sizes = {n: p.numel() for n, p in scored.items()}
            kept = candidate_sizes(mask, sizes, f"masks.{cfg.mask}")
            entries = planned_entries(mask, backbone, [scored[n].shape for n in kept])
            count = method.planned(model, entries)
            trains += f" (mask '{cfg.mask}': {_describe(mask)})"
        else:
            count = method.formula(model, ctx)
        rows.append(
            {
                "method": name,
                "kind": cfg.kind,
                "reference": method.reference,
                "trains (besides the head)": trains,
                "trainable": count,
                "fraction": count / backbone,
            }
        )
    return rows


def _describe(mask: MaskConfig) -> str:
    if mask.rule == "per_neuron":
        return f"per_neuron, {mask.task_specific}"
    if mask.rho in (0, 1):
        return mask.task_specific if mask.rho == 1 else mask.task_agnostic
    return f"{mask.rule} {mask.task_specific} / {mask.task_agnostic}, rho {mask.rho}"
