"""Full fine-tuning: every weight trains. The reference that PEFT methods are judged against."""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import SubsetMethod, register_method
from shpeft.surgery import head_names


@register_method("full")
class Full(SubsetMethod):
    reference = "-"
    trains = "every weight"

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        head = head_names(model)
        return [param for name, param in model.named_parameters() if name not in head]
