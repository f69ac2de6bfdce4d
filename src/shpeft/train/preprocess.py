"""uint8 images to normalised model inputs on the device, with augmentation in one resampling.

Images stay uint8 until they reach the device; augmentation (flip, shift, scale) and the resize to
the model's input size happen there in one `grid_sample`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shpeft.train.config import AugmentConfig


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
        """Augmented (random draws from `generator`) when a generator is given, else plain."""
        # Normalised last, in place: resampling weights sum to one, so the result is the same as
        # normalising first, without two more full-size tensors (the CPU path is memory-bound).
        x = images.permute(0, 3, 1, 2).to(torch.float32, copy=True)
        if generator is None:
            if x.shape[-2:] != self.size:
                x = F.interpolate(
                    x, size=self.size, mode="bilinear", antialias=True, align_corners=False
                )
            return x.sub_(self.mean).div_(self.std)
        grid = F.affine_grid(
            self._transforms(len(x), generator).to(x.device),
            [len(x), 3, *self.size],
            align_corners=False,
        )
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return x.sub_(self.mean).div_(self.std)

    def _transforms(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random affine maps (zoom, flip, shift) as `affine_grid` takes them."""
        aug = self.augment

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) * (high - low) + low

        zoom = uniform(1 - aug.scale, 1 + aug.scale)
        flip = torch.where(torch.rand(n, generator=generator) < aug.hflip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = flip / zoom
        theta[:, 1, 1] = 1 / zoom
        theta[:, 0, 2] = uniform(-2 * aug.translate, 2 * aug.translate)
        theta[:, 1, 2] = uniform(-2 * aug.translate, 2 * aug.translate)
        return theta
