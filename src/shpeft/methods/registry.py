"""The method registry and the interface every method implements.

A method is one module with a config dataclass (subclassing `MethodConfig`, every field documented)
and a `Method` subclass registered with `@register_method(kind)`. `apply` turns a backbone with a
fresh head into a model whose trainable parameters are exactly the method's; `save` writes only
what was trained (with the backbone's sha256), `load` puts it back onto a fresh backbone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from shpeft.backbone import check_backbone
from shpeft.errors import ShpeftError
from shpeft.params import build

_MODULES = ("full", "linear", "sparse")


@dataclass
class MethodConfig:
    kind: str
    #: Overrides of `finetune` keys for this method only (e.g. a lower `lr` for full tuning).
    finetune: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """What a method may need beyond its config: where it runs and its extra inputs."""

    dataset: str
    seed: int
    backbone_meta: dict[str, Any]
    inputs: dict[str, Path] = field(default_factory=dict)


def head_names(model: nn.Module) -> set[str]:
    """Parameter names of the classifier head (timm models name it via `get_classifier`)."""
    head = model.get_classifier()
    return {
        name
        for name, param in model.named_parameters()
        if any(param is p for p in head.parameters())
    }


class Method:
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    #: The file, in the run's directory, that holds what the method trained.
    trained_file: ClassVar[str] = "trained.safetensors"

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg

    def apply(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        """Make exactly this method's parameters trainable (injecting modules); return the model."""
        raise NotImplementedError

    def trained_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {
            n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
        }

    def load_trained_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise ShpeftError(
                f"trained state does not fit the model: unknown tensors {unknown[:4]}"
            )
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def save(self, model: nn.Module, path: Path, backbone_sha256: str) -> None:
        """Write what was trained, tagged with the backbone it was trained on."""
        metadata = {"backbone_sha256": backbone_sha256, "kind": self.cfg.kind}
        save_file(self.trained_state(model), path, metadata=metadata)

    def load(self, model: nn.Module, path: Path, backbone_sha256: str) -> nn.Module:
        """Put what `save` wrote back onto `model` (a fresh backbone with the same hash)."""
        with safe_open(str(path), framework="pt") as handle:
            check_backbone(path, handle.metadata(), backbone_sha256)
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        self.load_trained_state(model, state)
        return model

    def count(self, model: nn.Module) -> dict[str, int]:
        """Trainable parameter counts: backbone and head apart."""
        head = head_names(model)
        trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
        return {
            "trainable_backbone": sum(v for n, v in trainable.items() if n not in head),
            "trainable_head": sum(v for n, v in trainable.items() if n in head),
        }


_METHODS: dict[str, type[Method]] = {}


def register_method(kind: str) -> Callable[[type[Method]], type[Method]]:
    def decorator(cls: type[Method]) -> type[Method]:
        _METHODS[kind] = cls
        return cls

    return decorator


def methods() -> dict[str, type[Method]]:
    for module in _MODULES:
        importlib.import_module(f"shpeft.methods.{module}")
    return dict(_METHODS)


def create_method(params: dict[str, Any]) -> Method:
    """A method instance from its params entry (`kind` plus the method's own options)."""
    known = methods()
    kind = params.get("kind")
    if kind not in known:
        raise ShpeftError(f"unknown method kind '{kind}' (known: {', '.join(sorted(known))})")
    cls = known[kind]
    return cls(build(cls.config_cls, params))


def freeze(model: nn.Module) -> None:
    for param in model.parameters():
        param.requires_grad_(False)


def unfreeze_head(model: nn.Module) -> None:
    for param in model.get_classifier().parameters():
        param.requires_grad_(True)
