"""The training loop shared by fine-tuning and the demo backbone's pretraining.

AdamW (no weight decay on biases and norms), linear warmup then cosine decay per step, gradient
clipping, bf16 autocast on CUDA. Images stay uint8 until they reach the device; augmentation
(flip, shift, scale) and the resize to the model's input size happen there in one `grid_sample`.
The epoch with the best validation score is kept; the test split is never seen here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path
from shpeft.metrics import classification_metrics

log = logging.getLogger(__name__)

#: Validation metrics a run may be selected by; all are "higher is better" except loss.
SELECT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "loss")


@dataclass
class AugmentConfig:
    #: Probability of a horizontal flip.
    hflip: float = 0.5
    #: Largest shift, as a fraction of the image side.
    translate: float = 0.1
    #: Largest relative zoom in or out.
    scale: float = 0.1


@dataclass
class FinetuneConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    #: Linear warmup length in epochs (may be fractional), then cosine decay to zero.
    warmup: float = 1.0
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    #: Validation metric for model selection (test data never takes part).
    select: str = "accuracy"
    #: auto (CUDA when available) | cpu | cuda
    device: str = "auto"
    #: Torch's deterministic algorithms and the cuBLAS workspace setting.
    deterministic: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Fix Python, NumPy and torch RNGs (data order uses its own seeded generator)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ShpeftError("finetune.device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


class Preprocess(nn.Module):
    """uint8 NHWC batch -> normalised float NCHW at the model's input size, optionally augmented."""

    def __init__(self, model: nn.Module, augment: AugmentConfig) -> None:
        super().__init__()
        from timm.data import resolve_model_data_config

        data_cfg = resolve_model_data_config(model)
        # A ViT built with another img_size keeps its pretrained_cfg's size; the patch embed knows.
        patch_embed = getattr(model, "patch_embed", None)
        self.size = tuple(getattr(patch_embed, "img_size", None) or data_cfg["input_size"][1:])
        self.register_buffer("mean", torch.tensor(data_cfg["mean"]).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(data_cfg["std"]).view(1, 3, 1, 1) * 255)
        self.augment = augment

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # Normalised last, in place: resampling weights sum to one, so the result is the same as
        # normalising first, without two more full-size tensors (the CPU path is memory-bound).
        x = images.permute(0, 3, 1, 2).to(torch.float32, copy=True)
        if generator is None:
            if x.shape[-2:] != self.size:
                x = F.interpolate(
                    x, size=self.size, mode="bilinear", antialias=True, align_corners=False
                )
            return x.sub_(self.mean).div_(self.std)
        n, aug = x.shape[0], self.augment

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) * (high - low) + low

        zoom = uniform(1 - aug.scale, 1 + aug.scale)
        flip = torch.where(torch.rand(n, generator=generator) < aug.hflip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = flip / zoom
        theta[:, 1, 1] = 1 / zoom
        theta[:, 0, 2] = uniform(-2 * aug.translate, 2 * aug.translate)
        theta[:, 1, 2] = uniform(-2 * aug.translate, 2 * aug.translate)
        grid = F.affine_grid(theta.to(x.device), [n, 3, *self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return x.sub_(self.mean).div_(self.std)


def param_groups(params: list[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    decay = [p for _, p in params if p.ndim >= 2]
    no_decay = [p for _, p in params if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.no_grad()
def predict(
    model: nn.Module, prep: Preprocess, images: np.ndarray, batch_size: int, device: torch.device
) -> np.ndarray:
    """Class probabilities (float64) for uint8 images, in order."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(prep(batch))
        out.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
    return np.concatenate(out)


def evaluate(
    model, prep, images, labels, batch_size, device
) -> tuple[dict[str, float], np.ndarray]:
    probs = predict(model, prep, images, batch_size, device)
    metrics = classification_metrics(labels, probs)
    return metrics, probs


@dataclass
class FitResult:
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]


def _progress(iterable, total: int, desc: str):
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False)
    return iterable


def _better(new: dict[str, float], best: dict[str, float] | None, select: str) -> bool:
    if best is None:
        return True
    if select == "loss":
        return new["loss"] < best["loss"]
    # Ties (frequent on small validation sets) go to the lower validation loss.
    return (new[select], -new["loss"]) > (best[select], -best["loss"])


@dataclass
class Checkpoint:
    """Where `fit` saves its state at every epoch's end, so that a killed job resumes there.

    The file holds the trainable parameters only, with the optimizer, scheduler and every RNG.
    `fingerprint` binds it to one job: a state saved under another is deleted, not resumed.
    """

    path: Path
    fingerprint: str
    #: Saved with the state and restored by `load` (finetune keeps its MLflow run id here).
    meta: dict[str, str] = field(default_factory=dict)
    #: The state `fit` resumes from, set by `load`; None to start afresh.
    state: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Checkpoint:
        checkpoint = cls(Path(path), fingerprint)
        if not checkpoint.path.is_file():
            return checkpoint
        try:  # weights_only: tensors and plain containers, no pickled code runs
            state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            log.warning("%s cannot be read (%s): deleted", checkpoint.path, type(exc).__name__)
            checkpoint.delete()
            return checkpoint
        if state.get("fingerprint") != fingerprint:
            log.warning("%s was saved for another configuration: deleted", checkpoint.path)
            checkpoint.delete()
            return checkpoint
        checkpoint.meta, checkpoint.state = dict(state["meta"]), state
        return checkpoint

    def save(self, state: dict[str, Any]) -> None:
        with atomic_path(self.path) as tmp:
            torch.save({**state, "fingerprint": self.fingerprint, "meta": self.meta}, tmp)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the job's own directory, if nothing else is there
            self.path.parent.rmdir()


def _rng_state(order: torch.Generator) -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "order": order.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], order: torch.Generator) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    numpy_state["state"]["key"] = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    order.set_state(state["order"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: FinetuneConfig,
    seed: int,
    device: torch.device,
    on_epoch=None,
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """Train the parameters of `model` that require grad; keep the best epoch on `val`.

    With a `checkpoint`, resume from its state and save the state after every epoch.
    """
    if cfg.select not in SELECT_METRICS:
        raise ShpeftError(f"finetune.select: '{cfg.select}' is not one of {SELECT_METRICS}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ShpeftError("the method left no parameter to train")
    model.to(device)
    prep = Preprocess(model, cfg.augment).to(device)
    images, labels = train
    steps_per_epoch = max(1, len(images) // cfg.batch_size)
    optimizer = torch.optim.AdamW(param_groups(named, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(cfg.epochs * steps_per_epoch, round(cfg.warmup * steps_per_epoch)),
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    order = torch.Generator().manual_seed(seed)
    labels_t = torch.from_numpy(labels).long()
    history, best, best_epoch, best_state = [], None, 0, {}
    done = 0
    if checkpoint is not None and checkpoint.state is not None:
        state, checkpoint.state = checkpoint.state, None
        with torch.no_grad():
            for name, param in named:
                param.copy_(state["trainable"][name])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], order)
        done, history, best = state["epoch"], state["history"], state["best"]
        best_epoch = state["best_epoch"]
        best_state = {n: t.to(device) for n, t in state["best_state"].items()}
        log.info("resuming after epoch %d/%d from %s", done, cfg.epochs, checkpoint.path)
    for epoch in range(done + 1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        permutation = torch.randperm(len(images), generator=order)[
            : steps_per_epoch * cfg.batch_size
        ]
        total_loss, correct, seen = 0.0, 0, 0
        for index in _progress(
            permutation.view(steps_per_epoch, -1), steps_per_epoch, f"epoch {epoch}"
        ):
            batch = torch.from_numpy(images[index.numpy()]).to(device, non_blocking=True)
            target = labels_t[index].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(prep(batch, generator=order))
                loss = loss_fn(logits.float(), target)
            if not torch.isfinite(loss):
                raise ShpeftError(
                    f"training diverged: loss is {loss.item()} at epoch {epoch}; lower lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p in named], cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(index)
            correct += (logits.argmax(1) == target).sum().item()
            seen += len(index)
        val_metrics, _ = evaluate(model, prep, *val, 2 * cfg.batch_size, device)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            **{f"val_{k}": v for k, v in val_metrics.items()},
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - start,
        }
        history.append(row)
        if _better(val_metrics, best, cfg.select):
            best, best_epoch = val_metrics, epoch
            best_state = {n: p.detach().clone() for n, p in named}
        log.info(
            "epoch %d/%d train_loss %.4f val_acc %.4f val_loss %.4f",
            epoch,
            cfg.epochs,
            row["train_loss"],
            row["val_accuracy"],
            row["val_loss"],
        )
        if on_epoch is not None:
            on_epoch(row)
        if checkpoint is not None:
            checkpoint.save(
                {
                    "epoch": epoch,
                    "trainable": {n: p.detach() for n, p in named},
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(order),
                    "history": history,
                    "best": best,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                }
            )
    with torch.no_grad():
        for name, param in named:
            param.copy_(best_state[name])
    return FitResult(best_epoch, best_state, history)
