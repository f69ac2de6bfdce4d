"""The `backbone` params section: which timm model, and where its weights come from."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from shpeft.config import Section
from shpeft.data.synthetic_images import KINDS


def _known_origin(weights: str) -> str:
    from shpeft.backbone.weights import origin

    origin(weights)  # raises ValueError naming the known origins
    return weights


def _origin_pattern(schema: dict[str, Any]) -> None:
    from shpeft.backbone.weights import pattern

    schema["pattern"] = pattern()


class PretrainConfig(Section):
    """The demo backbone's pretraining on a synthetic source domain (`weights: pretrain`)."""

    kind: Literal[tuple(KINDS)] = "shapes"  # type: ignore[valid-type]
    """Synthetic domain to pretrain on (`shapes` is distinct from every demo target)."""
    n_train: int = Field(4000, ge=1)
    """Training images."""
    n_val: int = Field(400, ge=1)
    """Validation images (the epoch with the lowest validation loss is kept)."""
    image_size: int = Field(32, ge=16, le=1024)
    """Side of the generated images, in pixels."""
    epochs: int = Field(3, ge=1)
    """Pretraining epochs."""
    batch_size: int = Field(64, ge=1)
    """Images per step."""
    lr: float = Field(3e-3, gt=0)
    """Peak learning rate."""
    weight_decay: float = Field(0.05, ge=0)
    """AdamW weight decay."""
    warmup: float = Field(0.5, ge=0)
    """Warmup epochs."""
    seed: int = Field(0, ge=0)
    """Seeds the images, the initialisation and the training order."""


class BackboneConfig(Section):
    """The pretrained ViT every method adapts; its classifier head is replaced per dataset."""

    model: str = Field("vit_base_patch16_224.augreg_in21k", min_length=1)
    """A timm model name, e.g. `vit_base_patch16_224.augreg_in21k` (the paper's ImageNet-21k
    ViT-B/16)."""
    model_args: dict[str, Any] | None = Field(default_factory=dict)
    """Extra keyword arguments for `timm.create_model` (img_size, patch_size, depth, ...). An
    overlay merges keys into this mapping but cannot remove them: `null` clears the base file's."""
    weights: Annotated[
        str, AfterValidator(_known_origin), Field(json_schema_extra=_origin_pattern)
    ] = "hub"
    """Where the weights come from: `none` (random), `hub` (timm's pretrained download),
    `pretrain` (the demo's own pretraining) or `file:<path>` (safetensors or a torch checkpoint)."""
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    """If set, the weights file (`file:`) or the loaded tensors (`hub`) must hash to this."""
    pretrained_cfg_overlay: dict[str, Any] | None = None
    """Passed to timm with `weights: hub`, e.g. `{file: local/copy.safetensors}`."""
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    """Settings of `weights: pretrain`."""

    @property
    def create_args(self) -> dict[str, Any]:
        """The keyword arguments of `timm.create_model` (none when `model_args` is null)."""
        return dict(self.model_args or {})
