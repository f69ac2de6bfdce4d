"""Importance of every eligible backbone weight, task-specific and task-agnostic.

Task-specific scores come from gradients of the target task's training loss, accumulated over a
few batches (with the head first fitted by a brief linear probe, so that the gradients are not
those of a random head): first-order Taylor estimates of the loss change when a weight is
removed, `sum |g w|` (L1) and `sum (g w)^2` (L2), and the plain gradient scores `sum |g|` and
`sum g^2` (SPT's sensitivity). Task-agnostic scores come from the pretrained weights alone:
`|w|` and `w^2`. Only the top-M entries per criterion are kept (indices into the concatenation
of the eligible tensors, in `eligible` order), and the top entries of every output neuron (for
GPS-style masks), never a full-size copy.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from pydantic import Field
from torch import nn

from shpeft import bound
from shpeft.config import Section
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, write_json
from shpeft.surgery import BLOCK_LINEARS
from shpeft.train.devices import to_numpy

TaskSpecific = Literal["taylor_l1", "taylor_l2", "grad_l1", "grad_l2"]
TaskAgnostic = Literal["magnitude_l1", "magnitude_l2"]
TASK_SPECIFIC: tuple[str, ...] = get_args(TaskSpecific)
TASK_AGNOSTIC: tuple[str, ...] = get_args(TaskAgnostic)
SCORES_FILE = "importance.safetensors"
SUMMARY_FILE = "summary.json"
DEFAULT_ELIGIBLE = tuple(f"{layer}.weight" for layer in BLOCK_LINEARS)


class ScoreConfig(Section):
    """The `score` step: importance of every eligible backbone weight per dataset."""

    batches: int = Field(12, ge=1)
    """Training batches whose gradients are accumulated."""
    batch_size: int = Field(32, ge=1)
    """Images per scoring batch (and per probe step)."""
    probe_epochs: int = Field(2, ge=0)
    """Epochs of linear probing that fit the head before scoring; 0 scores with a random head."""
    probe_lr: float = Field(0.01, gt=0)
    """Learning rate of the linear probe."""
    eligible: list[str] = Field(default_factory=lambda: list(DEFAULT_ELIGIBLE), min_length=1)
    """Glob patterns of the backbone tensors that may hold trainable entries."""
    top_m: int = Field(100_000, ge=1)
    """Entries kept per criterion (at least 10x the largest mask budget)."""
    per_row: int = Field(4, ge=1)
    """Entries kept per output neuron (row of a weight) and criterion, for GPS-style masks."""
    seed: int | None = Field(None, ge=0)
    """Seeds the probe and the choice of batches. Unset: each run's own seed, so every seed has
    its own scores and masks and the spread over seeds includes the selection's; set: one
    shared mask per dataset and variant for all seeds (the ablation that leaves it out)."""


def eligible_parameters(model: nn.Module, patterns: Sequence[str]) -> dict[str, nn.Parameter]:
    """The parameters whose names match any pattern, in the model's order."""
    chosen = {
        name: param
        for name, param in model.named_parameters()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }
    if not chosen:
        raise ShpeftError(f"score.eligible: no backbone tensor matches {list(patterns)}")
    return chosen


def agnostic_scores(params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    flat = torch.cat([p.detach().flatten().float() for p in params.values()])
    return {"magnitude_l1": flat.abs(), "magnitude_l2": flat.square()}


def gradient_scores(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
) -> dict[str, torch.Tensor]:
    """Accumulate the four task-specific criteria over `batches` of (inputs, targets)."""
    for param in model.parameters():
        param.requires_grad_(False)
    for param in params.values():
        param.requires_grad_(True)
    weights = torch.cat([p.detach().flatten().float() for p in params.values()])
    totals = {name: torch.zeros_like(weights) for name in TASK_SPECIFIC}
    model.eval()
    for inputs, targets in batches:
        grads = torch.autograd.grad(loss_fn(model(inputs), targets), list(params.values()))
        g = torch.cat([grad.flatten().float() for grad in grads])
        gw = g * weights
        totals["taylor_l1"] += gw.abs()
        totals["taylor_l2"] += gw.square()
        totals["grad_l1"] += g.abs()
        totals["grad_l2"] += g.square()
    for param in params.values():
        param.requires_grad_(False)
    return totals


def top_entries(scores: torch.Tensor, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and scores of the `m` largest entries, largest first."""
    m = min(m, scores.numel())
    values, indices = torch.topk(scores, m, sorted=True)
    return to_numpy(indices).astype(np.int64), to_numpy(values)


def top_per_row(scores: torch.Tensor, params: dict[str, nn.Parameter], k: int) -> np.ndarray:
    """Per output neuron (row) of every eligible tensor, the flat indices of its `k` best entries.

    Shape (rows over all tensors, k), best first; `k` is capped by the narrowest tensor's width.
    """
    shapes = [
        p.reshape(p.shape[0], -1).shape if p.ndim > 1 else (1, p.numel()) for p in params.values()
    ]
    k = min(k, *(cols for _, cols in shapes))
    parts, start = [], 0
    for rows, cols in shapes:
        block = scores[start : start + rows * cols].view(rows, cols)
        best = torch.topk(block, k, dim=1, sorted=True).indices
        parts.append(best + start + torch.arange(rows).unsqueeze(1) * cols)
        start += rows * cols
    return to_numpy(torch.cat(parts)).astype(np.int64)


def layer_summary(
    params: dict[str, nn.Parameter], scores: dict[str, torch.Tensor]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per tensor and criterion: sum, mean and max of the scores (for figures and sanity checks)."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    start = 0
    for name, param in params.items():
        stop = start + param.numel()
        summary[name] = {
            criterion: {
                "sum": float(values[start:stop].sum()),
                "mean": float(values[start:stop].mean()),
                "max": float(values[start:stop].max()),
            }
            for criterion, values in scores.items()
        }
        start = stop
    return summary


def write_scores(out_dir: Path, tensors: dict[str, torch.Tensor], summary: dict[str, Any]) -> None:
    """The score step's output: the top entries (bound to the backbone) and their summary."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        eligible = json.dumps(summary["eligible"])
        bound.write(tmp / SCORES_FILE, tensors, summary["backbone_sha256"], eligible=eligible)
        write_json(tmp / SUMMARY_FILE, summary)


def read_summary(importance_dir: Path) -> dict[str, Any]:
    path = Path(importance_dir) / SUMMARY_FILE
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise ShpeftError(f"{path}: importance summary missing or unreadable ({exc})") from None


@contextlib.contextmanager
def read_scores(importance_dir: Path, backbone_sha256: str) -> Iterator[bound.Reader]:
    """The top entries per criterion (`<criterion>.indices`, `.scores`, `.per_row`)."""
    path = Path(importance_dir) / SCORES_FILE
    with bound.read(path, backbone_sha256, framework="np", what="importance scores") as reader:
        yield reader
