"""Put sparse deltas into a model, take them out as a small file, merge them into dense weights.

A selection maps weight names (e.g. `blocks.3.attn.qkv.weight`) to the flat positions, within
that tensor, of the entries that train. The saved delta holds, per tensor, those positions and
their trained values, plus the classifier head, bound to the backbone's sha256 (`shpeft.bound`):
loading it onto a backbone with another hash is refused.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from shpeft import bound
from shpeft.errors import ShpeftError
from shpeft.selection.masks import Selection
from shpeft.sparse.delta import SparseDeltaLinear
from shpeft.surgery import parent_of
from shpeft.train.devices import to_numpy


def _parent(model: nn.Module, weight_name: str) -> tuple[nn.Module, str]:
    return parent_of(model, weight_name.removesuffix(".weight"))


def inject(model: nn.Module, selection: Selection) -> dict[str, SparseDeltaLinear]:
    """Replace each selected Linear with a SparseDeltaLinear over its selected entries."""
    layers = {}
    for name, positions in selection.items():
        parent, attr = _parent(model, name)
        base = getattr(parent, attr, None)
        if not isinstance(base, nn.Linear):
            raise ShpeftError(
                f"mask: '{name}' is not the weight of a Linear layer in this backbone"
            )
        index = torch.as_tensor(positions, dtype=torch.long)
        if len(index) and int(index.max()) >= base.weight.numel():
            raise ShpeftError(f"mask: position outside '{name}' ({tuple(base.weight.shape)})")
        layer = SparseDeltaLinear(base, index // base.in_features, index % base.in_features)
        setattr(parent, attr, layer)
        layers[name] = layer
    return layers


def sparse_layers(model: nn.Module) -> dict[str, SparseDeltaLinear]:
    """Injected layers by the name of the weight they change."""
    return {
        f"{name}.weight": module
        for name, module in model.named_modules()
        if isinstance(module, SparseDeltaLinear)
    }


def merge(model: nn.Module) -> nn.Module:
    """Fold every sparse delta into a plain Linear with weight W + D (in place)."""
    for name, layer in sparse_layers(model).items():
        parent, attr = _parent(model, name)
        base = layer.base
        with torch.no_grad():
            base.weight.copy_(layer.merged_weight())
        setattr(parent, attr, base)
    return model


def save_delta(
    path: str | Path, model: nn.Module, head: dict[str, torch.Tensor], backbone_sha256: str
) -> None:
    tensors = {}
    for name, layer in sparse_layers(model).items():
        tensors[f"{name}.indices"] = (layer.rows * layer.base.in_features + layer.cols).cpu()
        tensors[f"{name}.values"] = layer.values.detach().cpu().contiguous()
    tensors.update({f"head/{k}": v.detach().cpu().contiguous() for k, v in head.items()})
    bound.write(path, tensors, backbone_sha256)


def load_delta(path: str | Path, model: nn.Module, backbone_sha256: str) -> dict[str, torch.Tensor]:
    """Inject and fill the deltas of `path` into `model`; return the head tensors."""
    with bound.read(path, backbone_sha256, what="sparse delta") as reader:
        tensors = reader.all()
    selection = {
        key.removesuffix(".indices"): to_numpy(value)
        for key, value in tensors.items()
        if key.endswith(".indices")
    }
    layers = inject(model, selection)
    with torch.no_grad():
        for name, layer in layers.items():
            layer.values.copy_(tensors[f"{name}.values"])
    return {k.removeprefix("head/"): v for k, v in tensors.items() if k.startswith("head/")}
