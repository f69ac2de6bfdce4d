"""The training loop shared by fine-tuning, importance scoring's probe and the demo pretraining.

AdamW, Adam or SGD (`finetune.optimizer`; no weight decay on biases and norms), linear warmup
then cosine decay per step, gradient
clipping, bf16 autocast on CUDA unless the config says otherwise. The epoch with the best
validation score is kept; the test split is never seen here.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shpeft.errors import ShpeftError
from shpeft.train.config import FinetuneConfig
from shpeft.train.devices import to_device, to_numpy
from shpeft.train.metrics import classification_metrics
from shpeft.train.preprocess import Preprocess
from shpeft.train.state import Checkpoint, TrainingState

log = logging.getLogger(__name__)

Split = tuple[np.ndarray, np.ndarray]


@dataclass
class FitResult:
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]

    @property
    def best_val(self) -> dict[str, float]:
        """The validation scores of the kept epoch, without their `val_` prefix."""
        best = self.history[self.best_epoch - 1]
        return {k.removeprefix("val_"): v for k, v in best.items() if k.startswith("val_")}


def param_groups(params: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    decay = [p for _, p in params if p.ndim >= 2]
    no_decay = [p for _, p in params if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


#: `FinetuneConfig.optimizer`: each builds its optimizer over the parameter groups.
OPTIMIZERS: dict[str, Callable[[list[dict], FinetuneConfig], torch.optim.Optimizer]] = {
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.peak_lr),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.peak_lr),
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.peak_lr, momentum=cfg.momentum),
}


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast where asked (`FinetuneConfig.uses_bf16`), float32 otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def predict(
    model: nn.Module,
    prep: Preprocess,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
) -> np.ndarray:
    """Class probabilities (float64) for uint8 images, in order."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = to_device(images[start : start + batch_size], device)
        with autocast(device, bf16):
            logits = model(prep(batch))
        out.append(to_numpy(torch.softmax(logits.double(), dim=1)))
    return np.concatenate(out)


def evaluate(
    model: nn.Module,
    prep: Preprocess,
    split: Split,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
) -> tuple[dict[str, float], np.ndarray]:
    """The metrics of `shpeft.train.metrics` on one split, and its class probabilities."""
    images, labels = split
    probs = predict(model, prep, images, batch_size, device, bf16)
    return classification_metrics(labels, probs), probs


def _progress(iterable, total: int, desc: str):
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False)
    return iterable


def new_state(
    named: list[tuple[str, nn.Parameter]], cfg: FinetuneConfig, steps_per_epoch: int, seed: int
) -> TrainingState:
    """A fresh state: the configured optimizer, warmup-cosine schedule, a data-order generator
    seeded by `seed`."""
    optimizer = OPTIMIZERS[cfg.optimizer](param_groups(named, cfg.weight_decay), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(cfg.epochs * steps_per_epoch, round(cfg.warmup * steps_per_epoch)),
    )
    return TrainingState(named, optimizer, scheduler, torch.Generator().manual_seed(seed))


def train_epoch(
    model: nn.Module,
    prep: Preprocess,
    train: Split,
    state: TrainingState,
    cfg: FinetuneConfig,
    device: torch.device,
    epoch: int,
) -> dict[str, float]:
    """One pass over a shuffled, whole-batch part of `train`; mean loss and accuracy."""
    images, labels = train
    steps = max(1, len(images) // cfg.batch_size)
    order = state.order
    permutation = torch.randperm(len(images), generator=order)[: steps * cfg.batch_size]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    labels_t = torch.from_numpy(labels).long()
    params = [p for _, p in state.named]
    total_loss, correct, seen = 0.0, 0, 0
    model.train()
    for index in _progress(permutation.view(steps, -1), steps, f"epoch {epoch}"):
        batch = to_device(images[to_numpy(index)], device)
        target = labels_t[index].to(device, non_blocking=True)
        with autocast(device, cfg.uses_bf16(device)):
            logits = model(prep(batch, generator=order))
            loss = loss_fn(logits.float(), target)
        if not torch.isfinite(loss):
            raise ShpeftError(
                f"training diverged: loss is {loss.item()} at epoch {epoch}; lower lr"
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        state.optimizer.step()
        state.scheduler.step()
        total_loss += loss.item() * len(index)
        correct += (logits.argmax(1) == target).sum().item()
        seen += len(index)
    return {"train_loss": total_loss / seen, "train_accuracy": correct / seen}


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    cfg: FinetuneConfig,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """Train the parameters of `model` that require grad; keep the best epoch on `val`.

    With a `checkpoint`, resume from its state and save the state after every epoch.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ShpeftError("the method left no parameter to train")
    model.to(device)
    prep = Preprocess(model, cfg.augment).to(device)
    state = new_state(named, cfg, max(1, len(train[0]) // cfg.batch_size), seed)
    if checkpoint is not None and checkpoint.state is not None:
        state.load_state_dict(checkpoint.state)
        checkpoint.state = None
        log.info("resuming after epoch %d/%d from %s", state.epoch, cfg.epochs, checkpoint.path)
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        start = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch}
        row |= train_epoch(model, prep, train, state, cfg, device, epoch)
        bf16 = cfg.uses_bf16(device)
        val_metrics, _ = evaluate(model, prep, val, 2 * cfg.batch_size, device, bf16)
        row |= {f"val_{k}": v for k, v in val_metrics.items()}
        row |= {"lr": state.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
        state.record(row, val_metrics, cfg.select)
        log.info(
            "epoch %d/%d train_loss %.4f val_acc %.4f val_loss %.4f",
            *(epoch, cfg.epochs, row["train_loss"], row["val_accuracy"], row["val_loss"]),
        )
        if on_epoch is not None:
            on_epoch(row)
        if checkpoint is not None:
            checkpoint.save(state.state_dict())
    state.restore_best()
    return FitResult(state.best_epoch, state.best_state, state.history)
