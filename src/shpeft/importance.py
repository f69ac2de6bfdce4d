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

import fnmatch
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, write_json

TASK_SPECIFIC = ("taylor_l1", "taylor_l2", "grad_l1", "grad_l2")
TASK_AGNOSTIC = ("magnitude_l1", "magnitude_l2")
SCORES_FILE = "importance.safetensors"
DEFAULT_ELIGIBLE = (
    "blocks.*.attn.qkv.weight",
    "blocks.*.attn.proj.weight",
    "blocks.*.mlp.fc1.weight",
    "blocks.*.mlp.fc2.weight",
)


@dataclass
class ScoreConfig:
    #: Training batches whose gradients are accumulated.
    batches: int = 12
    batch_size: int = 32
    #: Epochs of linear probing that fit the head before scoring; 0 scores with a random head.
    probe_epochs: int = 2
    probe_lr: float = 0.01
    #: Glob patterns of the backbone tensors that may hold trainable entries.
    eligible: list[str] = field(default_factory=lambda: list(DEFAULT_ELIGIBLE))
    #: Entries kept per criterion (at least 10x the largest mask budget).
    top_m: int = 100_000
    #: Entries kept per output neuron (row of a weight) and criterion, for GPS-style masks.
    per_row: int = 4
    #: Seeds the probe and the choice of batches.
    seed: int = 0


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
    return indices.numpy().astype(np.int64), values.numpy()


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
    return torch.cat(parts).numpy().astype(np.int64)


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


def score_dataset(
    data_dir: str | Path, backbone_dir: str | Path, cfg: ScoreConfig, out_dir: str | Path
) -> dict[str, Any]:
    """The `score` step: importance of every eligible weight for one dataset, top-M kept."""
    from shpeft.backbone import load_backbone
    from shpeft.data.prepared import PreparedDataset
    from shpeft.methods.registry import freeze, unfreeze_head
    from shpeft.training import FinetuneConfig, Preprocess, fit, resolve_device, seed_everything

    started = time.perf_counter()
    seed = cfg.seed
    seed_everything(seed)
    device = resolve_device("auto")
    data = PreparedDataset.load(data_dir)
    model, meta = load_backbone(backbone_dir, data.num_classes)
    params = eligible_parameters(model, cfg.eligible)
    images, labels = data.part("train")
    if cfg.probe_epochs > 0:
        freeze(model)
        unfreeze_head(model)
        probe = FinetuneConfig(epochs=cfg.probe_epochs, batch_size=cfg.batch_size, lr=cfg.probe_lr)
        fit(model, (images, labels), data.part("val"), probe, seed, device)
    model.to(device)
    prep = Preprocess(model, FinetuneConfig().augment).to(device)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    batches = [
        (
            prep(torch.from_numpy(images[index.numpy()]).to(device)),
            torch.from_numpy(labels[index]).to(device),
        )
        for index in order.split(cfg.batch_size)[: cfg.batches]
    ]
    scores = {
        **{
            k: v.cpu()
            for k, v in gradient_scores(model, params, batches, nn.CrossEntropyLoss()).items()
        },
        **agnostic_scores(params),
    }
    tensors = {}
    for criterion, values in scores.items():
        indices, top = top_entries(values, cfg.top_m)
        tensors[f"{criterion}.indices"] = torch.from_numpy(indices)
        tensors[f"{criterion}.scores"] = torch.from_numpy(top)
        tensors[f"{criterion}.per_row"] = torch.from_numpy(top_per_row(values, params, cfg.per_row))
    sizes = {name: param.numel() for name, param in params.items()}
    summary = {
        "backbone_sha256": meta["sha256"],
        "backbone_params": meta["num_params"],
        "eligible": sizes,
        "config": asdict(cfg),
        "layers": layer_summary(params, scores),
        "seconds": time.perf_counter() - started,
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file(
            tensors,
            tmp / SCORES_FILE,
            metadata={"backbone_sha256": meta["sha256"], "eligible": json.dumps(sizes)},
        )
        write_json(tmp / "summary.json", summary)
    return summary
