"""Visual Prompt Tuning (Jia et al., ECCV 2022): learnable prompt tokens, shallow or deep.

`vpt-shallow` inserts `length` prompt tokens after the class/register tokens, before the first
block; `vpt-deep` replaces them with a fresh set at every block. The prompts are taken out again
after the last block, so the backbone's own pooling (class token or average of patch tokens) and
final norm see what they were trained on. Prompts are initialised uniformly in
`+-sqrt(6 / (3 * patch_area + dim))`, as in the paper's code. `peft`'s prompt tuning is for
language models and has no vision counterpart, hence this module.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from shpeft.errors import ShpeftError
from shpeft.methods.registry import (
    Recipe,
    RunContext,
    SizedConfig,
    SizedMethod,
    register_method,
)


class VptConfig(SizedConfig):
    """VPT's options."""

    length: int = Field(10, ge=1)
    """Prompt tokens per layer."""
    dropout: float = Field(0.0, ge=0, le=1)
    """Dropout on the prompt tokens."""


class PromptedBlocks(nn.Module):
    """A ViT's blocks with prompt tokens inserted before the first (deep: before each) block."""

    def __init__(self, blocks: nn.Module, prompts: torch.Tensor, prefix: int, dropout: float):
        super().__init__()
        self.blocks = blocks
        self.prompts = nn.Parameter(prompts)  # (layers, length, dim): 1 layer shallow, all deep
        self.prefix = prefix
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = self.prompts.shape[1]
        for index, block in enumerate(self.blocks):
            if index < len(self.prompts):
                prompts = self.dropout(self.prompts[index]).expand(len(x), -1, -1).to(x.dtype)
                kept = x[:, self.prefix + (length if index else 0) :]
                x = torch.cat([x[:, : self.prefix], prompts, kept], dim=1)
            x = block(x)
        return torch.cat([x[:, : self.prefix], x[:, self.prefix + length :]], dim=1)


class _Vpt(SizedMethod):
    config_cls = VptConfig
    size_option = "length"
    reference = "Jia et al., ECCV 2022"
    recipe = Recipe(
        finetune={
            "optimizer": "sgd",
            "momentum": 0.9,
            "lr": 0.5,
            "lr_batch": 256,
            "weight_decay": 0.001,
        },
        grid={"weight_decay": [0.0, 0.0001, 0.001, 0.01]},
        source="VPT's paper, appendix A: SGD, lr per 256 images and weight decay chosen per task "
        "on validation, from 0.05 to 50 and these four",
    )
    deep: ClassVar[bool]

    def _layers(self, model: nn.Module) -> int:
        if not isinstance(getattr(model, "blocks", None), nn.Sequential):
            raise ShpeftError(f"method '{self.kind}' needs a ViT with a `blocks` sequence")
        return len(model.blocks) if self.deep else 1

    def count_for(self, model: nn.Module, size: int) -> int:
        return self._layers(model) * size * model.embed_dim

    def max_size(self, model: nn.Module) -> int:
        # Prompts beyond the number of patch tokens only slow attention down.
        return max(1, model.patch_embed.num_patches)

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        length, dim = self.size(model), model.embed_dim
        patch = getattr(model.patch_embed, "patch_size", (16, 16))
        bound = math.sqrt(6.0 / (3 * math.prod(patch) + dim))
        prompts = nn.init.uniform_(torch.empty(self._layers(model), length, dim), -bound, bound)
        model.blocks = PromptedBlocks(
            model.blocks, prompts, model.num_prefix_tokens, self.cfg.dropout
        )


@register_method("vpt-shallow")
class VptShallow(_Vpt):
    deep = False
    trains = "prompt tokens at the input"


@register_method("vpt-deep")
class VptDeep(_Vpt):
    deep = True
    trains = "prompt tokens at every block"
