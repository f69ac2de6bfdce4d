"""Importance of every eligible backbone weight, task-specific and task-agnostic.

Task-specific scores come from gradients of a scoring loss on the target task's training data,
accumulated over a few batches (with the head first fitted by a brief linear probe, so that the
gradients are not those of a random head). Pure gradient signals, with no weight factor:
`grad_sum = |sum g|` (the size of the update the summed gradient makes, GPS's accumulated
gradient), `grad_l1 = sum |g|` and `grad_l2 = sum g^2` (SPT's sensitivity); and the first-order
Taylor estimates of the loss change when a weight is removed, `taylor_l1 = sum |g w|` and
`taylor_l2 = sum (g w)^2`, which carry |w| and so are part task-agnostic. Each is accumulated
under every scoring loss of `score.losses`: cross-entropy, or GPS's supervised-contrastive loss on
two augmented views of the pre-head feature. Task-agnostic scores come from the pretrained
weights alone: `|w|` and `w^2`. Only the top-M entries per criterion are kept (indices into the
concatenation of the eligible tensors, in `eligible` order), and the top entries of every output
neuron (for GPS-style masks), never a full-size copy.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from shpeft import bound
from shpeft.config import Section
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, write_json
from shpeft.surgery import BLOCK_LINEARS
from shpeft.train.devices import to_numpy

TaskSpecific = Literal["grad_sum", "grad_l1", "grad_l2", "taylor_l1", "taylor_l2"]
TaskAgnostic = Literal["magnitude_l1", "magnitude_l2"]
TASK_SPECIFIC: tuple[str, ...] = get_args(TaskSpecific)
TASK_AGNOSTIC: tuple[str, ...] = get_args(TaskAgnostic)
ScoringLoss = Literal["cross_entropy", "supcon"]
SCORES_FILE = "importance.safetensors"
SUMMARY_FILE = "summary.json"
#: The weight matrices of every block: what the sparse methods select among by default.
BLOCK_WEIGHTS = tuple(f"{layer}.weight" for layer in BLOCK_LINEARS)
#: What is scored by default: the block matrices, the patch embedding (GPS's candidates), and the
#: biases and norms (SPT's).
DEFAULT_ELIGIBLE = (
    *BLOCK_WEIGHTS,
    "patch_embed.proj.weight",
    "patch_embed.proj.bias",
    "blocks.*.bias",
    "blocks.*.norm?.weight",
    "norm.*",
    "fc_norm.*",
)


def specific_key(criterion: str, loss: str) -> str:
    """The name a task-specific criterion is stored under, per scoring loss."""
    return f"{loss}/{criterion}"


class ScoreConfig(Section):
    """The `score` step: importance of every eligible backbone weight per dataset."""

    batches: int = Field(16, ge=1)
    """Training batches whose gradients are accumulated (16 x 32 = 512 images, the size of
    SPT's sensitivity set; fewer where the training split is smaller)."""
    batch_size: int = Field(32, ge=1)
    """Images per scoring batch (and per probe step)."""
    probe_epochs: int = Field(2, ge=0)
    """Epochs of linear probing that fit the head before scoring; 0 scores with a random head."""
    probe_lr: float = Field(0.01, gt=0)
    """Learning rate of the linear probe."""
    eligible: list[str] = Field(default_factory=lambda: list(DEFAULT_ELIGIBLE), min_length=1)
    """Glob patterns of the backbone tensors that may hold trainable entries."""
    losses: list[ScoringLoss] = Field(
        default_factory=lambda: ["cross_entropy", "supcon"], min_length=1
    )
    """Scoring losses the task-specific criteria are accumulated under (a mask variant reads one,
    `masks.<name>.loss`): `cross_entropy`, or `supcon`, the supervised-contrastive loss of GPS's
    code on two augmented views of each image's pre-head feature."""
    temperature: float = Field(0.07, gt=0)
    """Temperature of the `supcon` loss (GPS's 0.07)."""
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
    batches: Sequence[Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The task-specific criteria of `loss_fn(model, batch)`'s gradients over `batches`."""
    for param in model.parameters():
        param.requires_grad_(False)
    for param in params.values():
        param.requires_grad_(True)
    weights = torch.cat([p.detach().flatten().float() for p in params.values()])
    signed = torch.zeros_like(weights)
    totals = {name: torch.zeros_like(weights) for name in TASK_SPECIFIC if name != "grad_sum"}
    model.eval()
    for batch in batches:
        grads = torch.autograd.grad(loss_fn(model, batch), list(params.values()))
        g = torch.cat([grad.flatten().float() for grad in grads])
        gw = g * weights
        signed += g
        totals["grad_l1"] += g.abs()
        totals["grad_l2"] += g.square()
        totals["taylor_l1"] += gw.abs()
        totals["taylor_l2"] += gw.square()
    for param in params.values():
        param.requires_grad_(False)
    return {"grad_sum": signed.abs(), **totals}


def cross_entropy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return F.cross_entropy(model(inputs), targets)


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised-contrastive loss (Khosla et al. 2020) of `features` (views x batch x dim):
    every other view of the same class is a positive, every other view an anchor's contrast."""
    views, n, _ = features.shape
    z = F.normalize(features.reshape(views * n, -1), dim=1)
    labels = labels.repeat(views)
    logits = z @ z.T / temperature
    self_pair = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pair, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_pair
    count = positive.sum(1)
    mean_positive = log_prob.masked_fill(~positive, 0).sum(1) / count.clamp(min=1)
    return -mean_positive[count > 0].mean()


def pre_head_features(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The pooled feature a timm model feeds its head."""
    return model.forward_head(model.forward_features(inputs), pre_logits=True)


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
