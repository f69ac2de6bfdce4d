"""Full fine-tuning: every weight trains. The reference that PEFT methods are judged against."""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import SubsetMethod, register_method
from shpeft.surgery import backbone_parameters


@register_method("full")
class Full(SubsetMethod):
    reference = "-"
    trains = "every weight"

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(backbone_parameters(model).values())
