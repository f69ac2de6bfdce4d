"""Linear probing: the backbone is frozen, only the classifier head trains."""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import Method, RunContext, freeze, register_method, unfreeze_head


@register_method("linear")
class Linear(Method):
    def apply(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        freeze(model)
        unfreeze_head(model)
        return model
