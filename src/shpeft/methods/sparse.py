"""Methods that train the entries of a mask as sparse deltas, plus the head.

`sh-peft` trains the entries of a mask variant built by the `mask` step (the hybrid one in the
demo; the task-specific-only and task-agnostic-only variants give the ablations). `spt` and `gps`
are the same engine on their papers' selections, which are mask rules (see
`shpeft.selection.masks`): the variant they read must hold their own rule (`own_rule`), so
pairing either with a variant of another rule stops at validation.
`sparse-random` trains as many entries as its mask holds, at positions drawn by the run's seed
among the same eligible tensors. Every other backbone weight stays bitwise unchanged; what is
saved is `delta.safetensors` (per-tensor positions and values, and the head), bound to the
backbone's sha256.

Backpropagation stops by itself below the lowest block that holds a trainable entry: nothing there
requires a gradient, so autograd records no graph and keeps no activations for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from shpeft.config import Name
from shpeft.errors import ShpeftError
from shpeft.methods.registry import Method, MethodConfig, Recipe, RunContext, register_method
from shpeft.selection.masks import Mask, Selection, load_mask, random_selection, split_flat
from shpeft.sparse.inject import inject, load_delta, merge, save_delta
from shpeft.surgery import freeze, head_names


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
        return self.read_mask(ctx).k

    def selection(self, ctx: RunContext) -> Selection:
        return self.read_mask(ctx).selection

    def read_mask(self, ctx: RunContext) -> Mask:
        if "mask" not in ctx.inputs:
            raise ShpeftError(f"method kind '{self.kind}' needs its mask file as an input")
        return load_mask(ctx.inputs["mask"], ctx.backbone.sha256)

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        for layer in inject(model, self.selection(ctx)).values():
            layer.values.requires_grad_(True)

    def fold(self, model: nn.Module) -> None:
        merge(model)

    def save(self, model: nn.Module, path: Path, backbone_sha256: str) -> None:
        head = {n: p for n, p in model.named_parameters() if n in head_names(model)}
        save_delta(path, model, head, backbone_sha256)

    def load(self, model: nn.Module, path: Path, ctx: RunContext) -> nn.Module:
        freeze(model)
        head = load_delta(path, model, ctx.backbone.sha256)
        self.load_trained_state(model, head)
        return model


@register_method("spt")
class Spt(SparseMask):
    """SPT's unstructured part: the mask variant ranks by sensitivity (`grad_l2`), `rho: 1`."""

    reference = "SPT, He et al., ICCV 2023 (unstructured part)"
    trains = "k entries of qkv/proj/fc1/fc2 by sensitivity sum g^2"
    own_rule = {"rule": "split", "task_specific": "grad_l2", "rho": 1.0, "scope": "global"}
    recipe = Recipe(
        finetune={"optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0001},
        source="SPT's code, ziplab/SPT train_spt.py: AdamW, lr 1e-3, weight decay 1e-4",
    )


@register_method("gps")
class Gps(SparseMask):
    """GPS's selection: the mask variant uses the rule `per_neuron` on `grad_l1`."""

    reference = "GPS, Zhang et al., CVPR 2024"
    trains = "the top-K inputs of every neuron by gradient magnitude"
    own_rule = {"rule": "per_neuron", "task_specific": "grad_l1"}
    recipe = Recipe(
        finetune={"optimizer": "adam", "lr": 0.001, "weight_decay": 0.0},
        grid={"lr_scale": [0.3, 1.0, 3.0, 10.0]},
        source="GPS's code, FightingFighting/GPS train_gps.py: Adam without weight decay, lr "
        "chosen per task from 3e-4 to 1e-2",
    )


@register_method("sparse-random")
class SparseRandom(SparseMask):
    """The ablation without importance: the mask's budget, positions drawn by the run's seed."""

    reference = "ablation"
    trains = "k random entries of qkv/proj/fc1/fc2"

    def selection(self, ctx: RunContext) -> Selection:
        mask = self.read_mask(ctx)
        drawn = random_selection(sum(mask.eligible.values()), mask.k, ctx.seed)
        return split_flat(drawn, mask.eligible)
