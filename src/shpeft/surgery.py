"""Module surgery: finding a backbone's modules by name patterns, swapping them, freezing.

The one place where methods change a backbone's structure or what of it trains: LoRA, adapters,
SSF and the sparse engine all pick their targets with glob patterns over module names
(`blocks.*.attn.qkv`) and replace a module by a wrapper around it; every method starts from a
frozen model and unfreezes its part and the classifier head.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

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
