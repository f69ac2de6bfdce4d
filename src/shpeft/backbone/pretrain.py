"""Embedded pretraining of the demo backbone on a synthetic source domain (`weights: pretrain`).

The source domain (generic shapes and textures) is distinct from every target dataset, so that
the demo shows real transfer: features learnt here must help on ultrasound-, X-ray- and
dermoscopy-like targets the backbone never saw.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from shpeft.data.synthetic_images import KINDS, generate
from shpeft.train.config import FinetuneConfig
from shpeft.train.loop import fit

if TYPE_CHECKING:
    from shpeft.backbone.config import PretrainConfig

log = logging.getLogger(__name__)


def pretrain(model: nn.Module, cfg: PretrainConfig, device: torch.device) -> dict[str, Any]:
    """Train `model` (headless on entry and on return) on the source domain; report how it went."""
    classes = KINDS[cfg.kind]
    images, labels = generate(cfg.kind, cfg.n_train + cfg.n_val, cfg.image_size, cfg.seed)
    train = images[: cfg.n_train], labels[: cfg.n_train]
    val = images[cfg.n_train :], labels[cfg.n_train :]
    model.reset_classifier(len(classes))
    for param in model.parameters():
        param.requires_grad_(True)
    fit_cfg = FinetuneConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup=cfg.warmup,
        select="loss",
    )
    started = time.perf_counter()
    result = fit(model, train, val, fit_cfg, cfg.seed, device)
    model.reset_classifier(0)
    model.cpu()
    best = result.history[result.best_epoch - 1]
    log.info("pretrained on %s: val accuracy %.4f", cfg.kind, best["val_accuracy"])
    return {
        "source_domain": cfg.kind,
        "classes": list(classes),
        "val_accuracy": best["val_accuracy"],
        "best_epoch": result.best_epoch,
        "seconds": time.perf_counter() - started,
    }
