"""SSF (Lian et al., NeurIPS 2022): a per-channel scale and shift after each operation.

Every target module's output `y` becomes `gamma * y + beta` over its channels (the last
dimension of a ViT's token tensors, dimension 1 of a convolution's output). Default targets
follow the paper's ViT: the patch embedding's projection, both LayerNorms, qkv, the attention
projection, fc1 and fc2 of every block, and the final norm. `gamma` starts near 1 and `beta` near
0 (normal, std 0.02, as in the paper's code). After training they could be folded into the
preceding weights; shpeft keeps them apart.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from shpeft.errors import ShpeftError
from shpeft.methods.registry import Method, MethodConfig, Recipe, RunContext, register_method
from shpeft.surgery import match_modules, replace_module

# SSF's own list, in its order (which is the order its scales are initialised in), so not
# assembled from `surgery.BLOCK_LINEARS`.
DEFAULT_TARGETS = (
    "patch_embed.proj",
    "blocks.*.norm1",
    "blocks.*.attn.qkv",
    "blocks.*.attn.proj",
    "blocks.*.norm2",
    "blocks.*.mlp.fc1",
    "blocks.*.mlp.fc2",
    "norm",
    "fc_norm",
)


class SsfConfig(MethodConfig):
    """SSF's options."""

    targets: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS), min_length=1)
    """Glob patterns of the modules whose output is scaled and shifted (Linear, LayerNorm or
    Conv2d); `Identity` matches (a ViT without a final norm) are skipped."""


class ScaleShift(nn.Module):
    def __init__(self, module: nn.Module, channels: int) -> None:
        super().__init__()
        self.module = module
        # A convolution's channels are dimension 1 of (N, C, H, W); tokens' are the last one.
        shape = (channels, 1, 1) if isinstance(module, nn.Conv2d) else (channels,)
        self.scale = nn.Parameter(torch.empty(shape).normal_(1.0, 0.02))
        self.shift = nn.Parameter(torch.empty(shape).normal_(0.0, 0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.scale + self.shift


def channels(name: str, module: nn.Module) -> int:
    """Output channels of a Linear, a LayerNorm or a Conv2d."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.LayerNorm):
        return module.normalized_shape[-1]
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    raise ShpeftError(
        f"ssf.targets: '{name}' ({type(module).__name__}) is not a Linear, a LayerNorm or a Conv2d"
    )


@register_method("ssf")
class Ssf(Method):
    config_cls = SsfConfig
    reference = "Lian et al., NeurIPS 2022"
    trains = "a scale and shift per channel after each operation"
    recipe = Recipe(
        finetune={"optimizer": "adamw", "lr": 0.005, "weight_decay": 0.00005},
        source="SSF's VTAB scripts, dongzelian/SSF train_scripts/vit/vtab: AdamW, lr 5e-3 "
        "(1e-3 to 1e-2 per task), weight decay 5e-5",
    )

    def _targets(self, model: nn.Module) -> dict[str, int]:
        found = match_modules(model, self.cfg.targets, nn.Module, "ssf.targets")
        targets = {n: channels(n, m) for n, m in found.items() if not isinstance(m, nn.Identity)}
        if not targets:
            raise ShpeftError(f"ssf.targets: {self.cfg.targets} match only Identity modules")
        return targets

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        return 2 * sum(self._targets(model).values())

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        for name, width in self._targets(model).items():
            replace_module(model, name, ScaleShift(model.get_submodule(name), width))
