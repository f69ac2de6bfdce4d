"""LayerNorm tuning: the affine scale and shift of every LayerNorm of the backbone, plus the head.

A common baseline in PEFT comparisons (e.g. in the VPT and SSF papers' tables): it changes only how
each block normalises its input.
"""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import Method, RunContext, register_method


def layer_norms(model: nn.Module) -> dict[str, nn.LayerNorm]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)}


@register_method("ln-tune")
class LayerNormTune(Method):
    reference = "LayerNorm tuning (as in the VPT and SSF comparisons)"
    trains = "LayerNorm scales and shifts"

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        for norm in layer_norms(model).values():
            for param in norm.parameters():
                param.requires_grad_(True)

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        return sum(2 * norm.normalized_shape[-1] for norm in layer_norms(model).values())
