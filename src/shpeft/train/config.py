"""The `finetune` params section: how every run trains (a method may override some keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from shpeft.config import Section

if TYPE_CHECKING:
    import torch

#: Validation metrics a run may be selected by; all are "higher is better" except loss.
SelectMetric = Literal["accuracy", "balanced_accuracy", "macro_f1", "auc", "loss"]
OptimizerName = Literal["adamw", "adam", "sgd"]


class AugmentConfig(Section):
    """Training augmentation, applied on the device in one resampling step."""

    hflip: float = Field(0.5, ge=0, le=1)
    """Probability of a horizontal flip."""
    translate: float = Field(0.1, ge=0, le=0.5)
    """Largest shift, as a fraction of the image side."""
    scale: float = Field(0.1, ge=0, le=0.5)
    """Largest relative zoom in or out."""


class FinetuneConfig(Section):
    """An optimizer, linear warmup then cosine decay; the epoch best on validation is kept."""

    epochs: int = Field(10, ge=1)
    """Training epochs."""
    batch_size: int = Field(32, ge=1)
    """Images per training step (evaluation uses twice as many)."""
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate (per `lr_batch` images when that is set)."""
    lr_batch: int | None = Field(None, ge=1)
    """Set: `lr` is stated per this many images and the run uses lr x batch_size / lr_batch (the
    linear scaling rule of AdaptFormer's and VPT's recipes, base 256); unset: `lr` as it is."""
    optimizer: OptimizerName = "adamw"
    """`adamw` (decoupled weight decay), `adam` (weight decay added to the gradient, as GPS's
    code) or `sgd` with `momentum` (the recipes of AdaptFormer and VPT)."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """Momentum of `sgd` (Adam and AdamW keep their default betas)."""
    weight_decay: float = Field(0.05, ge=0)
    """Weight decay of weight matrices (biases and norms have none)."""
    warmup: float = Field(1.0, ge=0)
    """Linear warmup length in epochs (may be fractional), then cosine decay to zero."""
    grad_clip: float = Field(1.0, ge=0)
    """Largest gradient norm (0: no clipping)."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing of the cross-entropy loss."""
    select: SelectMetric = "accuracy"
    """Validation metric for model selection (test data never take part)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when available, else the CPU."""
    deterministic: bool = False
    """Torch's deterministic algorithms and the cuBLAS workspace setting."""
    bf16: bool | None = None
    """bf16 autocast of the forward passes; unset: on for CUDA, off on the CPU (each run records
    what it used)."""
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    """Training augmentation."""

    @property
    def peak_lr(self) -> float:
        """The learning rate the optimizer gets, `lr_batch` scaling applied."""
        return self.lr * self.batch_size / self.lr_batch if self.lr_batch else self.lr

    def uses_bf16(self, device: torch.device) -> bool:
        return self.bf16 if self.bf16 is not None else device.type == "cuda"
