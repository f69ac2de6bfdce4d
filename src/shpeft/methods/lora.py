"""LoRA (Hu et al., ICLR 2022) through Hugging Face `peft`, injected into the timm model in place.

Each target Linear gains a trainable low-rank update `(alpha / rank) * B A` (A: rank x in,
B: out x rank, B starting at zero so training starts from the pretrained function). Targets are
glob patterns over module names, resolved here to exact names so that `peft` adapts exactly those
(its own suffix matching would also catch, e.g., a convolutional `patch_embed.proj`).
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from shpeft.methods.registry import RunContext, SizedConfig, SizedMethod, register_method
from shpeft.surgery import BLOCK_LINEARS, match_modules, replace_module


class LoraConfig(SizedConfig):
    """LoRA's options."""

    rank: int = Field(8, ge=1)
    """Rank of each update."""
    alpha: float = Field(8.0, gt=0)
    """Scaling numerator: the update is multiplied by alpha / rank."""
    dropout: float = Field(0.0, ge=0, le=1)
    """Dropout on the LoRA branch's input."""
    targets: list[str] = Field(default_factory=lambda: list(BLOCK_LINEARS), min_length=1)
    """Glob patterns of the Linear modules that get an update."""


@register_method("lora")
class Lora(SizedMethod):
    config_cls = LoraConfig
    size_option = "rank"
    reference = "Hu et al., ICLR 2022 (Hugging Face peft)"
    trains = "rank-r updates of qkv, proj, fc1, fc2"

    def _targets(self, model: nn.Module) -> dict[str, nn.Linear]:
        return match_modules(model, self.cfg.targets, nn.Linear, "lora.targets")

    def count_for(self, model: nn.Module, size: int) -> int:
        return size * sum(m.in_features + m.out_features for m in self._targets(model).values())

    def max_size(self, model: nn.Module) -> int:
        return min(min(m.in_features, m.out_features) for m in self._targets(model).values())

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import inject_adapter_in_model

        rank = self.size(model)
        config = PeftLoraConfig(
            r=rank,
            lora_alpha=self.cfg.alpha,
            lora_dropout=self.cfg.dropout,
            target_modules=list(self._targets(model)),
        )
        inject_adapter_in_model(config, model)
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)

    def fold(self, model: nn.Module) -> None:
        from peft.tuners.lora import LoraLayer

        for name, module in list(model.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                replace_module(model, name, module.get_base_layer())
