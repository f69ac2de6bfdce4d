"""LoRA (Hu et al., ICLR 2022) through Hugging Face `peft`, injected into the timm model in place.

Each target Linear gains a trainable low-rank update `(alpha / rank) * B A` (A: rank x in,
B: out x rank, B starting at zero so training starts from the pretrained function). The paper
adapts the attention's query and value projections; timm fuses query, key and value into one
`attn.qkv` Linear, so a target naming a part (`blocks.*.attn.qkv.q`) first splits that Linear
into three (`shpeft.surgery.SplitQKV`), and folding fuses it back. Targets are glob patterns over
module names, resolved here to exact names so that `peft` adapts exactly those (its own suffix
matching would also catch, e.g., a convolutional `patch_embed.proj`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field
from torch import nn

from shpeft.methods.registry import RunContext, SizedConfig, SizedMethod, register_method
from shpeft.surgery import fuse_qkv, linear_shapes, replace_module, split_qkv


class LoraConfig(SizedConfig):
    """LoRA's options."""

    rank: int = Field(8, ge=1)
    """Rank of each update."""
    alpha: float = Field(8.0, gt=0)
    """Scaling numerator: the update is multiplied by alpha / rank."""
    dropout: float = Field(0.0, ge=0, le=1)
    """Dropout on the LoRA branch's input."""
    targets: list[str] = Field(
        default_factory=lambda: ["blocks.*.attn.qkv.q", "blocks.*.attn.qkv.v"], min_length=1
    )
    """Glob patterns of the Linear modules that get an update. A fused qkv's parts are named
    `<qkv>.q`, `.k`, `.v`: the default adapts query and value, as the paper; `blocks.*.attn.qkv`
    would adapt the fused matrix as one, `blocks.*.mlp.fc*` the MLP."""


def inject_lora(
    model: nn.Module, names: Sequence[str], rank: int, alpha: float, dropout: float
) -> None:
    """Give each named Linear (a fused qkv's parts split off first) a rank-`rank` update."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    split_qkv(model, names)
    config = PeftLoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(names)
    )
    inject_adapter_in_model(config, model)


def fold_lora(model: nn.Module) -> None:
    """Merge every update into its Linear's weight and fuse split qkv Linears back."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            replace_module(model, name, module.get_base_layer())
    fuse_qkv(model)


@register_method("lora")
class Lora(SizedMethod):
    config_cls = LoraConfig
    size_option = "rank"
    reference = "Hu et al., ICLR 2022 (Hugging Face peft)"
    trains = "rank-r updates of the attention's query and value"

    def _shapes(self, model: nn.Module) -> dict[str, tuple[int, int]]:
        return linear_shapes(model, self.cfg.targets, "lora.targets")

    def count_for(self, model: nn.Module, size: int) -> int:
        return size * sum(fan_in + fan_out for fan_in, fan_out in self._shapes(model).values())

    def max_size(self, model: nn.Module) -> int:
        return min(min(shape) for shape in self._shapes(model).values())

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        rank = self.size(model)
        inject_lora(model, list(self._shapes(model)), rank, self.cfg.alpha, self.cfg.dropout)
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)

    def fold(self, model: nn.Module) -> None:
        fold_lora(model)
