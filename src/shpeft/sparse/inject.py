"""Put sparse deltas into a model, take them out as a small file, merge them into dense weights.

A selection maps parameter names (e.g. `blocks.3.attn.qkv.weight`) to the flat positions, within
that tensor, of the entries that train. A Linear layer's weight gets the fast engine
(`SparseDeltaLinear`); any other tensor (a convolution's weight such as the patch embedding's, a
bias, a norm's scale) gets `ScatterDelta`, a parametrization that adds the trained values into a
copy of the tensor at every forward pass: it costs the tensor's size, small next to the block
matrices. The saved delta holds, per tensor, those positions and their trained values, plus every
tensor the method trains in full (the classifier head at least), bound to the backbone's sha256
(`shpeft.bound`): loading it onto a backbone with another hash is refused, and so is a selection
with a repeated or out-of-range position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from shpeft import bound
from shpeft.errors import ShpeftError
from shpeft.selection.masks import Selection
from shpeft.sparse.delta import SparseDeltaLinear
from shpeft.surgery import parent_of
from shpeft.train.devices import to_numpy

DENSE = "dense/"  # prefix, in a delta file, of the tensors trained in full


class ScatterDelta(nn.Module):
    """Parametrization `W + scatter(values)` of one tensor at fixed flat positions."""

    def __init__(self, name: str, tensor: torch.Tensor, positions: torch.Tensor) -> None:
        super().__init__()
        self.name = name
        self.register_buffer("positions", positions.to(tensor.device))
        self.values = nn.Parameter(
            torch.zeros(len(positions), dtype=tensor.dtype, device=tensor.device)
        )

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        flat = original.flatten().index_add(0, self.positions, self.values.to(original.dtype))
        return flat.view_as(original)


Layer = SparseDeltaLinear | ScatterDelta


def checked_positions(name: str, positions: Any, size: int, source: str) -> torch.Tensor:
    """The positions as a long tensor, refused (naming `source`) when repeated or out of range."""
    index = torch.as_tensor(np.asarray(positions), dtype=torch.long).flatten()
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= size):
        raise ShpeftError(f"{source}: '{name}' has a position that lies outside its {size} entries")
    if len(torch.unique(index)) != len(index):
        raise ShpeftError(f"{source}: '{name}' lists a position more than once")
    return index


def checked_selection(
    model: nn.Module, selection: Selection, source: str
) -> dict[str, torch.Tensor]:
    """The positions per tensor as long tensors; a tensor the model lacks, or bad positions, are
    refused naming `source`."""
    params = dict(model.named_parameters())
    checked = {}
    for name, positions in selection.items():
        if name not in params:
            raise ShpeftError(f"{source}: '{name}' is not a tensor of this backbone")
        checked[name] = checked_positions(name, positions, params[name].numel(), source)
    return checked


def inject(model: nn.Module, selection: Selection, source: str) -> dict[str, Layer]:
    """Make the selected entries of each named tensor trainable deltas (`source`: the file the
    selection came from, for messages)."""
    positions = checked_selection(model, selection, source)
    params = dict(model.named_parameters())
    layers: dict[str, Layer] = {}
    # Parametrizations first: wrapping a Linear afterwards moves its parameters' names.
    for name in sorted(positions, key=lambda n: _is_linear_weight(model, n)):
        index = positions[name]
        parent, attr = parent_of(model, name)
        if _is_linear_weight(model, name):
            rows, cols = index // parent.in_features, index % parent.in_features
            layer = SparseDeltaLinear(parent, rows, cols)
            holder, holder_attr = parent_of(model, name.removesuffix(".weight"))
            setattr(holder, holder_attr, layer)
        else:
            layer = ScatterDelta(name, params[name], index)
            parametrize.register_parametrization(parent, attr, layer)
        layers[name] = layer
    return layers


def _is_linear_weight(model: nn.Module, name: str) -> bool:
    parent, attr = parent_of(model, name)
    return attr == "weight" and isinstance(parent, nn.Linear)


def sparse_layers(model: nn.Module) -> dict[str, Layer]:
    """Injected deltas by the name of the tensor they change."""
    layers: dict[str, Layer] = {}
    for name, module in model.named_modules():
        if isinstance(module, SparseDeltaLinear):
            layers[f"{name}.weight"] = module
        elif isinstance(module, ScatterDelta):
            layers[module.name] = module
    return layers


def merge(model: nn.Module) -> nn.Module:
    """Fold every sparse delta into its tensor, leaving plain modules (in place)."""
    for name, layer in sparse_layers(model).items():
        if isinstance(layer, SparseDeltaLinear):
            holder, attr = parent_of(model, name.removesuffix(".weight"))
            with torch.no_grad():
                layer.base.weight.copy_(layer.merged_weight())
            setattr(holder, attr, layer.base)
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for attr in list(module.parametrizations):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    return model


def delta_values(model: nn.Module) -> set[int]:
    """Identities of the trained delta vectors (to tell them from tensors trained in full)."""
    return {id(layer.values) for layer in sparse_layers(model).values()}


def save_delta(
    path: str | Path,
    model: nn.Module,
    dense: dict[str, torch.Tensor],
    backbone_sha256: str,
    **metadata: str,
) -> None:
    """Write every delta's positions and values, and the `dense` tensors (trained in full)."""
    tensors = {}
    for name, layer in sparse_layers(model).items():
        tensors[f"{name}.indices"] = layer.positions.cpu()
        tensors[f"{name}.values"] = layer.values.detach().cpu().contiguous()
    tensors.update({f"{DENSE}{k}": v.detach().cpu().contiguous() for k, v in dense.items()})
    bound.write(path, tensors, backbone_sha256, **metadata)


def load_delta(
    path: str | Path, model: nn.Module, backbone_sha256: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Inject and fill the deltas of `path` into `model`; return the tensors trained in full and
    the file's metadata."""
    with bound.read(path, backbone_sha256, what="sparse delta") as reader:
        tensors, metadata = reader.all(), reader.metadata
    selection = {
        key.removesuffix(".indices"): to_numpy(value)
        for key, value in tensors.items()
        if key.endswith(".indices") and not key.startswith(DENSE)
    }
    dense = {k.removeprefix(DENSE): v for k, v in tensors.items() if k.startswith(DENSE)}
    if not dense:  # every method trains its head in full: an older format, or not a delta
        raise ShpeftError(
            f"{path}: holds no tensors trained in full (a delta file of an older "
            "shpeft? rerun its finetune job)"
        )
    layers = inject(model, selection, str(path))
    with torch.no_grad():
        for name, layer in layers.items():
            values = tensors.get(f"{name}.values")
            if values is None or values.shape != layer.values.shape:
                raise ShpeftError(f"{path}: '{name}' has no values for each of its positions")
            layer.values.copy_(values)
    return dense, metadata
