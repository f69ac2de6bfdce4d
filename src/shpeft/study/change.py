"""What full fine-tuning changed, entry by entry, and the model that keeps only its top part.

The change of a tensor is `|W_finetuned - W_pretrained|`, read from a full fine-tuning run's
saved weights and the backbone it started from. Entries are ranked by it over the concatenation
of the tensors in model order (ties to the lower position), which is how flat indices are
counted everywhere else (`shpeft.selection`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shpeft.backbone.model import BackboneInfo, load_backbone
from shpeft.errors import ShpeftError
from shpeft.methods.registry import RunContext, create_method
from shpeft.runs import RunFolder
from shpeft.surgery import backbone_parameters
from shpeft.train.devices import to_numpy


@dataclass
class FineTuning:
    """A full fine-tuning run loaded: the fine-tuned model and the pretrained backbone weights."""

    model: nn.Module
    pretrained: dict[str, torch.Tensor]
    finetuned: dict[str, torch.Tensor]
    backbone: BackboneInfo
    run: RunFolder

    def tensors(self, patterns: Sequence[str], what: str) -> dict[str, int]:
        """The backbone tensors matching any pattern (name: size, in model order)."""
        found = {
            name: tensor.numel()
            for name, tensor in self.pretrained.items()
            if any(fnmatch.fnmatchcase(name, p) for p in patterns)
        }
        if not found:
            raise ShpeftError(f"{what}: {list(patterns)} match no backbone tensor")
        return found

    def change(self, names: Sequence[str]) -> torch.Tensor:
        """|W_finetuned - W_pretrained| of the named tensors, concatenated (float32)."""
        return torch.cat(
            [(self.finetuned[n] - self.pretrained[n]).abs().flatten().float() for n in names]
        )

    def kept(
        self, names: Sequence[str], order: torch.Tensor, count: int
    ) -> dict[str, torch.Tensor]:
        """The named tensors with the change of their top `count` entries of `order` (flat
        indices into their concatenation) kept, every other entry back at its pretrained value."""
        keep = torch.zeros(sum(self.pretrained[n].numel() for n in names), dtype=torch.bool)
        keep[order[:count]] = True
        out, start = {}, 0
        for name in names:
            pre = self.pretrained[name]
            inside = keep[start : start + pre.numel()].view_as(pre)
            out[name] = torch.where(inside, self.finetuned[name], pre)
            start += pre.numel()
        return out

    def set_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Write backbone tensors (by name) into the model; the head stays fine-tuned."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)


def load_fine_tuning(run_dir: Path, backbone_dir: Path) -> FineTuning:
    """The run's fine-tuned model (head included) and the pretrained weights it started from."""
    run = RunFolder(run_dir)
    config = run.config()
    kind = config["method_config"]["kind"]
    if kind != "full":
        raise ShpeftError(f"{run.path}: the study reads a full fine-tuning run, this one is {kind}")
    classes = len(config["data"]["class_names"])
    model, backbone = load_backbone(backbone_dir, classes)
    pretrained = {n: p.detach().clone() for n, p in backbone_parameters(model).items()}
    method = create_method(config["method_config"])
    ctx = RunContext(config["dataset"], config["seed"], backbone)
    method.load(model, run.file(method.trained_file), ctx)
    finetuned = {n: p.detach().clone() for n, p in backbone_parameters(model).items()}
    return FineTuning(model, pretrained, finetuned, backbone, run)


def ranking(change: torch.Tensor) -> torch.Tensor:
    """Flat indices by decreasing change (ties to the lower index)."""
    return torch.sort(change, descending=True, stable=True).indices


def kept_count(share: float, total: int) -> int:
    return round(share * total)


def concentration(change: torch.Tensor, order: torch.Tensor, counts: Sequence[int]) -> np.ndarray:
    """The share of the total change held by the top `count` entries, per count."""
    cumulative = torch.cumsum(change[order].double(), 0)
    total = float(cumulative[-1]) if len(cumulative) else 0.0
    if total == 0:
        raise ShpeftError("the fine-tuning run changed none of the studied weights")
    held = [float(cumulative[c - 1]) if c > 0 else 0.0 for c in counts]
    return np.asarray(held) / total


def top_positions(change: torch.Tensor, k: int) -> np.ndarray:
    """The flat indices of the `k` entries changed most, sorted."""
    return np.sort(to_numpy(ranking(change)[:k]).astype(np.int64))
