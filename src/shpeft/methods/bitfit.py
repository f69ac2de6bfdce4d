"""BitFit (Ben Zaken et al., ACL 2022): every bias term of the backbone trains, plus the head."""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import Method, RunContext, head_names, register_method


def backbone_biases(model: nn.Module) -> dict[str, nn.Parameter]:
    head = head_names(model)
    return {
        name: param
        for name, param in model.named_parameters()
        if name.endswith(".bias") and name not in head
    }


@register_method("bitfit")
class BitFit(Method):
    reference = "Ben Zaken et al., ACL 2022"
    trains = "every bias of the backbone"

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        for param in backbone_biases(model).values():
            param.requires_grad_(True)

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        return sum(p.numel() for p in backbone_biases(model).values())
