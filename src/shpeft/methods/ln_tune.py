"""LayerNorm tuning: the affine scale and shift of every LayerNorm of the backbone, plus the head.

A common baseline in PEFT comparisons (e.g. in the VPT and SSF papers' tables): it changes only how
each block normalises its input.
"""

from __future__ import annotations

from torch import nn

from shpeft.methods.registry import SubsetMethod, register_method


@register_method("ln-tune")
class LayerNormTune(SubsetMethod):
    reference = "LayerNorm tuning (as in the VPT and SSF comparisons)"
    trains = "LayerNorm scales and shifts"

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [
            param
            for module in model.modules()
            if isinstance(module, nn.LayerNorm)
            for param in module.parameters()
        ]
