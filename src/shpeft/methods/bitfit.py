"""BitFit (Ben Zaken et al., ACL 2022): every bias term of the backbone trains, plus the head."""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import SubsetMethod, register_method
from shpeft.surgery import head_names


@register_method("bitfit")
class BitFit(SubsetMethod):
    reference = "Ben Zaken et al., ACL 2022"
    trains = "every bias of the backbone"

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        head = head_names(model)
        return [
            param
            for name, param in model.named_parameters()
            if name.endswith(".bias") and name not in head
        ]
