"""BitFit (Ben Zaken et al., ACL 2022): every bias term of the backbone trains, plus the head."""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import SubsetMethod, register_method
from shpeft.surgery import backbone_parameters


@register_method("bitfit")
class BitFit(SubsetMethod):
    reference = "Ben Zaken et al., ACL 2022"
    trains = "every bias of the backbone"

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for name, p in backbone_parameters(model).items() if name.endswith(".bias")]
