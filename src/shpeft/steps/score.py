"""The `score` step: importance of every eligible backbone weight for one dataset, top-M kept.

The head is first fitted by a brief linear probe (so that gradients are not those of a random
head), then the task-specific criteria are accumulated over a few training batches under each
scoring loss, and the task-agnostic ones read off the weights (`shpeft.selection.importance`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shpeft.backbone.model import load_backbone
from shpeft.dag import Job
from shpeft.data.prepared import PreparedDataset
from shpeft.selection.importance import (
    ScoreConfig,
    ScoringLoss,
    agnostic_scores,
    cross_entropy,
    eligible_parameters,
    gradient_scores,
    layer_summary,
    pre_head_features,
    specific_key,
    supcon_loss,
    top_entries,
    top_per_row,
    write_scores,
)
from shpeft.surgery import freeze, unfreeze_head
from shpeft.train.config import AugmentConfig, FinetuneConfig
from shpeft.train.devices import AUTO, Compute, to_device, to_numpy
from shpeft.train.loop import fit
from shpeft.train.preprocess import Preprocess


def run(
    job: Job, inputs: dict[str, Path], score: ScoreConfig, device: str, deterministic: bool
) -> dict[str, Any]:
    compute = Compute(device, deterministic)
    seeded = score.model_copy(update={"seed": int(job["seed"])})  # the job's: `Params.mask_seed`
    return score_dataset(
        inputs["data"], inputs["backbone"], seeded, job.outputs["importance"], compute
    )


def score_dataset(
    data_dir: Path,
    backbone_dir: Path,
    score: ScoreConfig,
    out_dir: Path,
    compute: Compute = AUTO,
) -> dict[str, Any]:
    """Score one dataset's eligible weights; write the top entries and the summary. An unset
    `score.seed` scores with seed 0."""
    started = time.perf_counter()
    score = score.model_copy(update={"seed": score.seed or 0})
    device = compute.start(score.seed)
    data = PreparedDataset.load(data_dir)
    model, backbone = load_backbone(backbone_dir, data.num_classes)
    params = eligible_parameters(model, score.eligible)
    train = data.part("train")
    if score.probe_epochs > 0:
        probe(model, train, data.part("val"), score, device)
    model.to(device)
    batches = scoring_batches(train, score, device)
    prep = Preprocess(model, AugmentConfig()).to(device)
    scores = {name: values.cpu() for name, values in agnostic_scores(params).items()}
    for loss in score.losses:  # each loss's criteria to the host at once: one set on the device
        criteria = gradient_scores(model, params, batches, scoring_loss(loss, prep, score))
        scores.update({specific_key(c, loss): v.cpu() for c, v in criteria.items()})
    tensors = top_tensors(scores, params, score)
    summary = {
        "backbone_sha256": backbone.sha256,
        "backbone_params": backbone.num_params,
        "eligible": {name: param.numel() for name, param in params.items()},
        "config": score.model_dump(),
        "layers": layer_summary(params, scores),
        "seconds": time.perf_counter() - started,
    }
    write_scores(Path(out_dir), tensors, summary)
    return summary


def probe(model: nn.Module, train, val, score: ScoreConfig, device: torch.device) -> None:
    """Fit the head alone, so that the gradients scored are those of a useful head."""
    freeze(model)
    unfreeze_head(model)
    cfg = FinetuneConfig(epochs=score.probe_epochs, batch_size=score.batch_size, lr=score.probe_lr)
    fit(model, train, val, cfg, score.seed, device)


def scoring_batches(
    train: tuple[np.ndarray, np.ndarray], score: ScoreConfig, device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `batches` batches of a seeded shuffle of the training split, on the device."""
    images, labels = train
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(score.seed))
    return [
        (to_device(images[to_numpy(index)], device), torch.from_numpy(labels[index]).to(device))
        for index in order.split(score.batch_size)[: score.batches]
    ]


def scoring_loss(
    loss: ScoringLoss, prep: Preprocess, score: ScoreConfig
) -> Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """`loss(model, (images, labels))`: cross-entropy of the plain images, or the supervised
    contrastive loss of two augmented views (drawn from a generator seeded by `score.seed`, so
    that each batch's views repeat)."""
    if loss == "cross_entropy":
        return lambda model, batch: cross_entropy(model, (prep(batch[0]), batch[1]))
    generator = torch.Generator().manual_seed(score.seed)

    def supcon(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        views = torch.stack([pre_head_features(model, prep(images, generator)) for _ in range(2)])
        return supcon_loss(views, labels, score.temperature)

    return supcon


def top_tensors(
    scores: dict[str, torch.Tensor], params: dict[str, nn.Parameter], score: ScoreConfig
) -> dict[str, torch.Tensor]:
    """Per criterion: the top-M flat indices and scores, and every neuron's best entries."""
    tensors = {}
    for criterion, values in scores.items():
        indices, top = top_entries(values, score.top_m)
        tensors[f"{criterion}.indices"] = torch.from_numpy(indices)
        tensors[f"{criterion}.scores"] = torch.from_numpy(top)
        tensors[f"{criterion}.per_row"] = torch.from_numpy(
            top_per_row(values, params, score.per_row)
        )
    return tensors
