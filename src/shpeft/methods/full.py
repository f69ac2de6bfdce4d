"""Full fine-tuning: every weight trains. The reference that PEFT methods are judged against."""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import Method, RunContext, register_method


@register_method("full")
class Full(Method):
    def apply(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        for param in model.parameters():
            param.requires_grad_(True)
        return model
