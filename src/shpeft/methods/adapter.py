"""AdaptFormer (Chen et al., NeurIPS 2022): a bottleneck MLP parallel to each block's MLP.

The MLP's output becomes `mlp(norm2(x)) + scale * up(dropout(relu(down(a))))`. As in the official
code (ShoufaChen/AdaptFormer `Block.forward`), the adapter reads the block's residual stream `a = x`
before the MLP's LayerNorm, has no LayerNorm of its own, a fixed scale 0.1 and dropout 0.1;
`input: normed` reads the LayerNorm's output instead (`a = norm2(x)`, the paper's equation). `up`
starts at zero, so training starts from the pretrained function.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
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
from shpeft.surgery import match_modules, parent_of, replace_module


class AdapterConfig(SizedConfig):
    """AdaptFormer's options."""

    width: int = Field(64, ge=1)
    """Bottleneck width of each adapter."""
    scale: float = 0.1
    """Scale of the adapter's output (the paper's s)."""
    dropout: float = Field(0.1, ge=0, le=1)
    """Dropout after the adapter's ReLU."""
    input: Literal["residual", "normed"] = "residual"
    """What the adapter reads: `residual`, the block's stream before its MLP's LayerNorm (the
    official code); `normed`, that LayerNorm's output, the MLP's own input (the paper's
    equation)."""
    targets: list[str] = Field(default_factory=lambda: ["blocks.*.mlp"], min_length=1)
    """Glob patterns of the MLP modules that get a parallel adapter."""


class InputTap(nn.Module):
    """Wraps the MLP's LayerNorm, keeping its input (the residual stream) for the adapter."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.stream: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.stream = x
        return self.norm(x)

    def take(self) -> torch.Tensor:
        stream, self.stream = self.stream, None  # held for one forward pass only
        return stream


class ParallelAdapter(nn.Module):
    def __init__(
        self,
        mlp: nn.Module,
        dim: int,
        width: int,
        scale: float,
        dropout: float,
        tap: InputTap | None,
    ) -> None:
        super().__init__()
        self.mlp = mlp
        self.tap = [tap]  # a list: the tap is the block's module, not a child of this one
        self.down = nn.Linear(dim, width)
        self.up = nn.Linear(width, dim)
        self.scale = scale
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        source = h if self.tap[0] is None else self.tap[0].take()
        branch = self.up(self.dropout(F.relu(self.down(source))))
        return self.mlp(h) + self.scale * branch


@register_method("adapter")
class Adapter(SizedMethod):
    config_cls = AdapterConfig
    size_option = "width"
    reference = "AdaptFormer, Chen et al., NeurIPS 2022"
    trains = "a parallel bottleneck MLP per block"
    recipe = Recipe(
        finetune={
            "optimizer": "sgd",
            "momentum": 0.9,
            "lr": 0.1,
            "lr_batch": 256,
            "weight_decay": 0.0,
        },
        source="AdaptFormer's code, ShoufaChen/AdaptFormer: SGD, base lr 0.1 per 256 images, "
        "no weight decay",
    )

    def _dims(self, model: nn.Module) -> dict[str, int]:
        mlps = match_modules(model, self.cfg.targets, nn.Module, "adapter.targets")
        return {name: _in_features(name, mlp) for name, mlp in mlps.items()}

    def count_for(self, model: nn.Module, size: int) -> int:
        return sum(2 * dim * size + size + dim for dim in self._dims(model).values())

    def max_size(self, model: nn.Module) -> int:
        return min(self._dims(model).values())

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        width = self.size(model)
        for name, dim in self._dims(model).items():
            tap = self._tap(model, name) if self.cfg.input == "residual" else None
            mlp = model.get_submodule(name)
            adapter = ParallelAdapter(mlp, dim, width, self.cfg.scale, self.cfg.dropout, tap)
            replace_module(model, name, adapter)

    def _tap(self, model: nn.Module, name: str) -> InputTap:
        """Wrap the LayerNorm in front of MLP `name` (its block's `norm2`) to read its input."""
        block, _ = parent_of(model, name)
        norm = getattr(block, "norm2", None)
        if norm is None:
            raise ShpeftError(
                f"adapter.input residual: the block of '{name}' has no norm2 whose input to read "
                "(use input: normed)"
            )
        tap = InputTap(norm)
        block.norm2 = tap
        return tap


def _in_features(name: str, mlp: nn.Module) -> int:
    first = next((m for m in mlp.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ShpeftError(f"adapter.targets: '{name}' holds no Linear layer to read its width from")
    return first.in_features
