"""Full fine-tuning: every weight trains. The reference that PEFT methods are judged against."""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import Method, RunContext, register_method


@register_method("full")
class Full(Method):
    reference = "-"
    trains = "every weight"

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        for param in model.parameters():
            param.requires_grad_(True)

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        return sum(p.numel() for p in model.parameters()) - sum(
            p.numel() for p in model.get_classifier().parameters()
        )
