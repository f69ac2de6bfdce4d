"""Methods that train the entries of a mask as sparse deltas, plus the head.

`sh-peft` trains the entries of a mask variant built by the `mask` step (the hybrid one in the
demo; the task-specific-only and task-agnostic-only variants give the ablations). `spt` and `gps`
are the same engine on their papers' selections, which are mask rules (see
`shpeft.selection.masks`): the variant they read must hold their own rule (`own_rule`), so
pairing either with a variant of another rule stops at validation. Each adds what its official
code trains besides: GPS every bias in full; SPT (`spt`) LoRA on each weight matrix where its
sensitive entries are many, and in full each bias or norm vector where they are dense, the
sparse entries elsewhere (`spt-unstructured`: the sparse entries alone, for the ablation).
`sparse-random` trains as many entries as its mask holds, at positions drawn by the run's seed
among the same candidate tensors; `sparse-oracle`, the reference with hindsight, the entries that
full fine-tuning changed most (the `oracle` step's mask, docs/study.md). Every other backbone
weight stays bitwise unchanged; what is saved is `delta.safetensors` (per-tensor positions and
values, and what trains in full), bound to the backbone's sha256.

Backpropagation stops by itself below the lowest block that holds a trainable entry: nothing there
requires a gradient, so autograd records no graph and keeps no activations for it.
"""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from shpeft.config import Name
from shpeft.errors import ShpeftError
from shpeft.methods.lora import fold_lora, inject_lora
from shpeft.methods.registry import (
    Method,
    MethodConfig,
    Recipe,
    RunContext,
    methods,
    register_method,
)
from shpeft.selection.masks import Mask, Selection, load_mask, random_selection, split_flat
from shpeft.sparse.inject import (
    checked_selection,
    delta_values,
    inject,
    load_delta,
    merge,
    save_delta,
)
from shpeft.surgery import QKV_PARTS, SplitQKV, freeze, split_qkv


class SparseConfig(MethodConfig):
    """A method that trains the entries of a mask variant."""

    mask: Name
    """The mask variant (a key of `masks`) whose entries train, read from
    `results/<experiment>/masks/<dataset>/seed<s>/<mask>.safetensors` (s: the run's seed, or the
    shared `score.seed`)."""


@register_method("sh-peft")
class SparseMask(Method):
    config_cls = SparseConfig
    trained_file = "delta.safetensors"
    reference = "SH-PEFT, MICCAI 2024 (reconstructed)"
    trains = "k entries of qkv/proj/fc1/fc2 by importance"
    #: Settings the mask variant must have: this method's own selection rule (empty: any).
    own_rule: ClassVar[dict[str, Any]] = {}

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        return self.planned(model, self.read_mask(ctx).k)

    def planned(self, model: nn.Module, entries: int) -> int:
        """Trainable backbone parameters with a mask of `entries` (SPT: before its LoRA)."""
        return entries

    def selection(self, ctx: RunContext) -> Selection:
        return self.read_mask(ctx).selection

    def read_mask(self, ctx: RunContext) -> Mask:
        if "mask" not in ctx.inputs:
            raise ShpeftError(f"method kind '{self.kind}' needs its mask file as an input")
        return load_mask(ctx.inputs["mask"], ctx.backbone.sha256)

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        for layer in inject(model, self.selection(ctx), str(ctx.inputs["mask"])).values():
            layer.values.requires_grad_(True)

    def fold(self, model: nn.Module) -> None:
        merge(model)

    def dense_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What trains in full (the head, and what the method adds), by parameter name."""
        deltas = delta_values(model)
        return {
            n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in deltas
        }

    def save(self, model: nn.Module, path: Path, backbone_sha256: str) -> None:
        save_delta(path, model, self.dense_state(model), backbone_sha256)

    def load(self, model: nn.Module, path: Path, ctx: RunContext) -> nn.Module:
        freeze(model)
        dense, _ = load_delta(path, model, ctx.backbone.sha256)
        self.load_trained_state(model, dense)
        return model


@register_method("spt-unstructured")
class SptUnstructured(SparseMask):
    """SPT's sensitive entries alone: the mask variant ranks by sensitivity (`grad_l2`),
    `rho: 1`, global; no structured part."""

    reference = "SPT, He et al., ICCV 2023 (unstructured part only)"
    trains = "the k most sensitive entries (sum g^2)"
    own_rule = {"rule": "split", "task_specific": "grad_l2", "rho": 1.0, "scope": "global"}
    recipe = Recipe(
        finetune={"optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0001},
        source="SPT's code, ziplab/SPT train_spt.py: AdamW, lr 1e-3, weight decay 1e-4",
    )


class SptConfig(SparseConfig):
    """SPT's options (its code's defaults)."""

    rank: int = Field(8, ge=1)
    """Rank of the LoRA update of each structured matrix (SPT's `low_rank_dim`)."""
    alpha: float = Field(10.0, gt=0)
    """A weight matrix whose sensitive entries number at least its LoRA's parameter count /
    alpha is tuned with LoRA instead of its entries (SPT's `alpha`)."""
    vector_share: float = Field(0.2, gt=0, le=1)
    """A bias or norm vector with at least this share of sensitive entries trains in full
    (SPT's 1 / `beta`)."""
    dropout: float = Field(0.1, ge=0, le=1)
    """Dropout on the LoRA branch's input (SPT's `structured_drop`)."""


@dataclass
class SptPlan:
    """How SPT tunes each tensor holding sensitive entries (query, key, value apart)."""

    structured: list[str]  # Linear modules tuned with LoRA
    full: list[str]  # vectors trained in full
    sparse: Selection  # the rest: their sensitive entries

    def count(self, model: nn.Module, rank: int) -> int:
        params = dict(model.named_parameters())
        modules = dict(model.named_modules())
        lora = sum(
            rank * (modules[m].in_features + modules[m].out_features) for m in self.structured
        )
        return (
            lora + sum(params[n].numel() for n in self.full) + sum(map(len, self.sparse.values()))
        )


@register_method("spt")
class Spt(SptUnstructured):
    """SPT-LoRA as its code builds it: the structured part on the matrices over the threshold."""

    config_cls = SptConfig
    reference = "SPT, He et al., ICCV 2023"
    trains = "the sensitive entries (sum g^2); LoRA instead where a matrix has many (counted apart)"

    def plan(self, model: nn.Module, selection: Selection, source: str) -> SptPlan:
        """Split the fused qkv Linears, then decide per tensor (SPT's `get_sensitivity`)."""
        checked_selection(model, selection, source)
        split_qkv(model)
        plan = SptPlan([], [], {})
        modules, params = dict(model.named_modules()), dict(model.named_parameters())
        for name, positions in part_selection(modules, selection).items():
            holder, _, attr = name.rpartition(".")
            module = modules[holder]
            if params[name].ndim == 1:
                if len(positions) >= self.cfg.vector_share * params[name].numel():
                    plan.full.append(name)
                    continue
            elif attr == "weight" and isinstance(module, nn.Linear):
                lora = self.cfg.rank * (module.in_features + module.out_features)
                if len(positions) >= lora / self.cfg.alpha:
                    plan.structured.append(holder)
                    continue
            plan.sparse[name] = positions
        return plan

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        copy = deepcopy(model)
        plan = self.plan(copy, self.selection(ctx), str(ctx.inputs["mask"]))
        return plan.count(copy, self.cfg.rank)

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        plan = self.plan(model, self.selection(ctx), str(ctx.inputs["mask"]))
        full = [dict(model.named_parameters())[n] for n in plan.full]
        layers = inject(model, plan.sparse, str(ctx.inputs["mask"]))
        self._add_lora(model, plan.structured)
        for param in [*full, *(layer.values for layer in layers.values())]:
            param.requires_grad_(True)

    def _add_lora(self, model: nn.Module, structured: list[str]) -> None:
        """LoRA without alpha / rank scaling (SPT's scale is 1: peft's alpha = rank)."""
        if structured:
            inject_lora(model, structured, self.cfg.rank, self.cfg.rank, self.cfg.dropout)

    def save(self, model: nn.Module, path: Path, backbone_sha256: str) -> None:
        from peft.tuners.lora import LoraLayer

        structured = json.dumps([n for n, m in model.named_modules() if isinstance(m, LoraLayer)])
        save_delta(path, model, self.dense_state(model), backbone_sha256, structured=structured)

    def load(self, model: nn.Module, path: Path, ctx: RunContext) -> nn.Module:
        freeze(model)
        split_qkv(model)
        dense, metadata = load_delta(path, model, ctx.backbone.sha256)
        self._add_lora(model, json.loads(metadata.get("structured", "[]")))
        self.load_trained_state(model, dense)
        return model

    def fold(self, model: nn.Module) -> None:
        merge(model)
        fold_lora(model)


def part_selection(modules: dict[str, nn.Module], selection: Selection) -> Selection:
    """A selection over fused qkv tensors (split since) as one over their q, k, v parts."""
    parts: Selection = {}
    for name, positions in selection.items():
        holder, _, attr = name.rpartition(".")
        split = modules.get(holder)
        if not isinstance(split, SplitQKV):
            parts[name] = positions
            continue
        width = split.q.out_features
        per_part = width * split.q.in_features if attr == "weight" else width
        for index, part in enumerate(QKV_PARTS):
            inside = positions[
                (positions >= index * per_part) & (positions < (index + 1) * per_part)
            ]
            if len(inside):
                parts[f"{holder}.{part}.{attr}"] = inside - index * per_part
    return parts


@register_method("gps")
class Gps(SparseMask):
    """GPS's selection: the mask variant uses the rule `per_neuron` on the accumulated gradient
    (`grad_sum`); every bias trains in full, norms stay frozen."""

    reference = "GPS, Zhang et al., CVPR 2024"
    trains = "the top-K inputs of every neuron by accumulated gradient, and every bias"
    own_rule = {"rule": "per_neuron", "task_specific": "grad_sum"}
    recipe = Recipe(
        finetune={"optimizer": "adam", "lr": 0.001, "weight_decay": 0.0},
        grid={"lr_scale": [0.3, 1.0, 3.0, 10.0]},
        source="GPS's code, FightingFighting/GPS train_gps.py: Adam without weight decay, lr "
        "chosen per task from 3e-4 to 1e-2",
    )

    def planned(self, model: nn.Module, entries: int) -> int:
        return entries + sum(bias.numel() for bias in backbone_biases(model).values())

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        selected = self.selection(ctx)
        # Found before injection moves their names; a bias the mask selects keeps its entries.
        biases = [b for n, b in backbone_biases(model).items() if n not in selected]
        super().adapt(model, ctx)
        for bias in biases:
            bias.requires_grad_(True)


def backbone_biases(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every bias of the backbone but the norms' (GPS's code trains them, and the head, in full)."""
    head = {id(p) for p in model.get_classifier().parameters()}
    return {
        f"{name}.bias".lstrip("."): module.bias
        for name, module in model.named_modules()
        if isinstance(getattr(module, "bias", None), nn.Parameter)
        and not isinstance(module, NORMS)
        and id(module.bias) not in head
    }


NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


@register_method("sparse-oracle")
class SparseOracle(SparseMask):
    """The hindsight reference: the k entries one full fine-tuning run of the same dataset and
    seed changed most (the `oracle` step's mask, at the budget and among the candidates of
    `study.mask`), trained from the pretrained weights. It tells how far any importance
    estimate stands from the best positions one could have picked knowing the outcome."""

    config_cls = MethodConfig
    reference = "reference with hindsight (the top entries by full fine-tuning's change)"
    trains = "the k entries full fine-tuning changed most"
    hindsight = True


def mask_trainers(names: list[str], configs: dict[str, MethodConfig]) -> list[str]:
    """The named methods that train the entries of a mask file (a variant's, or the oracle's),
    in order: the study reads their mask files in this order."""
    known = methods()
    return [n for n in names if issubclass(known[configs[n].kind], SparseMask)]


@register_method("sparse-random")
class SparseRandom(SparseMask):
    """The ablation without importance: the mask's budget, positions drawn by the run's seed."""

    reference = "ablation"
    trains = "k random entries of qkv/proj/fc1/fc2"

    def selection(self, ctx: RunContext) -> Selection:
        mask = self.read_mask(ctx)
        drawn = random_selection(sum(mask.eligible.values()), mask.k, ctx.seed)
        return split_flat(drawn, mask.eligible)
