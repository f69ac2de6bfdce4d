"""Module surgery: finding a backbone's modules by name patterns, swapping them, freezing.

The one place where methods change a backbone's structure or what of it trains: LoRA, adapters,
SSF and the sparse engine all pick their targets with glob patterns over module names
(`blocks.*.attn.qkv`) and replace a module by a wrapper around it; every method starts from a
frozen model and unfreezes its part and the classifier head.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
from torch import nn

from shpeft.errors import ShpeftError

#: The Linear layers of every ViT block that the sparse and low-rank methods target by default:
#: attention qkv and output projection, the MLP's two layers.
BLOCK_LINEARS = ("blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2")


def match_modules(
    model: nn.Module,
    patterns: Sequence[str],
    kinds: type | tuple[type, ...],
    option: str,
) -> dict[str, nn.Module]:
    """Modules whose names match any pattern, in the model's order; all must be of `kinds`.

    `option` names the params key the patterns came from, for the message when none matches or
    a match is of the wrong kind.
    """
    chosen = {
        name: module
        for name, module in model.named_modules()
        if name and any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }
    if not chosen:
        raise ShpeftError(f"{option}: no module of the backbone matches {list(patterns)}")
    wrong = [name for name, module in chosen.items() if not isinstance(module, kinds)]
    if wrong:
        expected = (
            kinds.__name__ if isinstance(kinds, type) else "/".join(k.__name__ for k in kinds)
        )
        raise ShpeftError(f"{option}: {wrong[:3]} matched, but they are not {expected} modules")
    return chosen


def parent_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding `name` (a module name) and the attribute it is held under."""
    path = name.split(".")
    return (model.get_submodule(".".join(path[:-1])) if len(path) > 1 else model), path[-1]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, attr = parent_of(model, name)
    setattr(parent, attr, new)


#: The parts of a fused attention input projection (timm's `attn.qkv`), in its row order.
QKV_PARTS = ("q", "k", "v")


class SplitQKV(nn.Module):
    """A fused qkv Linear as three Linears `q`, `k`, `v` (copies of its row blocks), whose outputs
    are concatenated: LoRA's and SPT's papers adapt query, key and value as separate matrices."""

    def __init__(self, fused: nn.Linear) -> None:
        super().__init__()
        width = fused.out_features // 3
        biases = fused.bias.split(width) if fused.bias is not None else (None,) * 3
        for part, weight, bias in zip(QKV_PARTS, fused.weight.split(width), biases, strict=True):
            linear = nn.Linear(fused.in_features, width, bias is not None)
            linear.to(fused.weight.device, fused.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(weight)
                if bias is not None:
                    linear.bias.copy_(bias)
            linear.requires_grad_(fused.weight.requires_grad)
            self.add_module(part, linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.get_submodule(part)(x) for part in QKV_PARTS], dim=-1)

    def fused(self) -> nn.Linear:
        """The one Linear again (each part a plain Linear by then: adaptations folded)."""
        parts = [self.get_submodule(part) for part in QKV_PARTS]
        first = parts[0]
        fused = nn.Linear(first.in_features, 3 * first.out_features, first.bias is not None)
        fused.to(first.weight.device, first.weight.dtype)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([part.weight for part in parts]))
            if first.bias is not None:
                fused.bias.copy_(torch.cat([part.bias for part in parts]))
        return fused


def is_fused_qkv(name: str, module: nn.Module) -> bool:
    return name.rsplit(".", 1)[-1] == "qkv" and isinstance(module, nn.Linear)


def linear_shapes(model: nn.Module, patterns: Sequence[str], option: str) -> dict[str, tuple]:
    """(in, out) features of the Linear modules that `patterns` match, a fused qkv's parts
    (`<qkv>.q`, `.k`, `.v`) among them, without changing the model. A match that is not a
    Linear, or a fused qkv matched together with its parts, is refused."""
    shapes: dict[str, tuple | None] = {}  # None: a module that is not a Linear
    for name, module in model.named_modules():
        if not name:
            continue
        linear = isinstance(module, nn.Linear)
        shapes[name] = (module.in_features, module.out_features) if linear else None
        if is_fused_qkv(name, module):
            for part in QKV_PARTS:
                shapes[f"{name}.{part}"] = (module.in_features, module.out_features // 3)
    chosen = {n: s for n, s in shapes.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    if not chosen:
        raise ShpeftError(f"{option}: no module of the backbone matches {list(patterns)}")
    wrong = [name for name, shape in chosen.items() if shape is None]
    if wrong:
        raise ShpeftError(f"{option}: {wrong[:3]} matched, but they are not Linear modules")
    both = [n for n in chosen if any(f"{n}.{part}" in chosen for part in QKV_PARTS)]
    if both:
        raise ShpeftError(
            f"{option}: {both[:3]} matched together with its parts: adapt the fused qkv or its "
            "parts (`.q`, `.k`, `.v`), not both"
        )
    return chosen


def split_qkv(model: nn.Module, names: Sequence[str] | None = None) -> None:
    """Split every fused qkv Linear that one of `names` is a part of (`<qkv>.q`, ...); all of
    them when `names` is None."""
    for name, module in list(model.named_modules()):
        wanted = names is None or any(n.startswith(f"{name}.") for n in names)
        if is_fused_qkv(name, module) and wanted:
            replace_module(model, name, SplitQKV(module))


def fuse_qkv(model: nn.Module) -> None:
    """Undo `split_qkv` (after the parts' adaptations were folded into them)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, SplitQKV):
            replace_module(model, name, module.fused())


def freeze(model: nn.Module) -> None:
    for param in model.parameters():
        param.requires_grad_(False)


def unfreeze_head(model: nn.Module) -> None:
    for param in model.get_classifier().parameters():
        param.requires_grad_(True)


def backbone_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every parameter but the classifier head's, by name."""
    head = head_names(model)
    return {name: param for name, param in model.named_parameters() if name not in head}


def head_names(model: nn.Module) -> set[str]:
    """Parameter names of the classifier head (timm models name it via `get_classifier`)."""
    head = model.get_classifier()
    return {
        name
        for name, param in model.named_parameters()
        if any(param is p for p in head.parameters())
    }
