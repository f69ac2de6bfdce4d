"""The method registry and the interface every method implements.

A method is one module in this package: a config (subclassing `MethodConfig`, every field
documented) and a `Method` subclass registered with `@register_method(kind)`. Registering is all
it takes: the registry finds every module here, and the params model's `methods.<id>` union,
the JSON schema and the reference docs gain the kind from it.

`apply` turns a backbone with a fresh head into a model whose trainable parameters are exactly the
method's: it freezes everything, lets the method `adapt` the backbone (inject its modules,
unfreeze its parameters), then unfreezes the head. `save` writes only what was trained (bound to
the backbone's sha256), `load` puts it back onto a fresh backbone.

Methods with a size knob (LoRA's rank, a prompt length, a bottleneck width) subclass
`SizedMethod`: their trainable count is a formula of the backbone and the size, so params can ask
for `target_params` and get the size that comes closest.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

import torch
from pydantic import Field, ValidationError, create_model
from torch import nn

from shpeft import bound
from shpeft.config import Section, merged, partial
from shpeft.errors import ShpeftError
from shpeft.surgery import freeze, head_names, unfreeze_head
from shpeft.train.config import FinetuneConfig
from shpeft.train.tuning import TuneGrid

if TYPE_CHECKING:
    from shpeft.backbone.model import BackboneInfo

FinetuneOverride = partial(FinetuneConfig)
TuneGridOverride = partial(TuneGrid)


class MethodConfig(Section):
    """Keys every method takes besides its `kind`."""

    finetune: FinetuneOverride = Field(default_factory=FinetuneOverride)  # type: ignore[valid-type]
    """Overrides of `finetune` keys for this method only, over its kind's own recipe (e.g. a
    lower `lr` for full tuning)."""
    tune: TuneGridOverride = Field(default_factory=TuneGridOverride)  # type: ignore[valid-type]
    """Lists of `tune.grid` replaced for this method only, over its kind's own search."""


@dataclass(frozen=True)
class Recipe:
    """A method kind's own training recipe, as its paper or official code states it (`source`):
    the `finetune` keys it sets over the shared section, and the `tune.grid` lists its authors
    searched. Empty: the shared `finetune` section and `tune.grid`."""

    finetune: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    source: str = ""

    def describe(self) -> str:
        keys = ", ".join(f"{k} {v}" for k, v in self.finetune.items())
        searched = ", ".join(f"{k} {v}" for k, v in self.grid.items())
        return f"{keys}{f'; tuned over {searched}' if searched else ''} ({self.source})"


@dataclass
class RunContext:
    """What a method may need beyond its config: where it runs and its extra inputs."""

    dataset: str
    seed: int
    backbone: BackboneInfo | None
    inputs: dict[str, Path] = field(default_factory=dict)


class Method:
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    #: The config model with its `kind`, made by `register_method`.
    config_model: ClassVar[type[MethodConfig]]
    kind: ClassVar[str]
    #: The file, in the run's directory, that holds what the method trained.
    trained_file: ClassVar[str] = "trained.safetensors"
    #: For tables: the paper the method follows, and what trains besides the head.
    reference: ClassVar[str] = ""
    trains: ClassVar[str] = ""
    #: How the method trains unless params say otherwise (`training_config`, `tune_grid`).
    recipe: ClassVar[Recipe] = Recipe()
    #: A reference that chose what it trains knowing the outcome (`sparse-oracle`): shown in the
    #: tables, kept out of their ranks and tests.
    hindsight: ClassVar[bool] = False

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg

    def apply(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        """Make exactly this method's parameters trainable (injecting modules); return the model."""
        freeze(model)
        self.adapt(model, ctx)
        unfreeze_head(model)
        return model

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        """Inject the method's modules and unfreeze its backbone part (nothing: linear probing)."""

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        """Trainable backbone parameters `apply` will give, from the backbone's shapes alone."""
        return 0

    def fold(self, model: nn.Module) -> None:
        """Fold what the method added into the backbone's own weights, where that is possible
        (sparse deltas, LoRA), so that the model is a plain timm model again."""

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
        """Write what was trained, bound to the backbone it was trained on."""
        bound.write(path, self.trained_state(model), backbone_sha256, kind=self.kind)

    def load(self, model: nn.Module, path: Path, ctx: RunContext) -> nn.Module:
        """Apply the method to `model` (a fresh backbone with the same hash), then put back what
        `save` wrote."""
        with bound.read(path, ctx.backbone.sha256, what="trained part") as reader:
            state = reader.all()
        self.apply(model, ctx)
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


class SubsetMethod(Method):
    """A method that trains a subset of the backbone's own parameters (no module injected)."""

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The backbone parameters that train (the head is unfrozen by `apply`)."""
        raise NotImplementedError

    def adapt(self, model: nn.Module, ctx: RunContext) -> None:
        for param in self.parameters(model):
            param.requires_grad_(True)

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        return sum(param.numel() for param in self.parameters(model))


class SizedConfig(MethodConfig):
    """Keys of every method with a size option."""

    target_params: int | None = Field(None, ge=1)
    """Trainable backbone parameters to aim for: when set, the method's size option is chosen to
    come closest (ties to the smaller size), for comparisons at matched budgets."""


class SizedMethod(Method):
    """A method whose trainable count grows linearly with one integer option (`size_option`)."""

    config_cls: ClassVar[type[MethodConfig]] = SizedConfig
    size_option: ClassVar[str]

    def count_for(self, model: nn.Module, size: int) -> int:
        """Trainable backbone parameters at `size`, from the backbone's shapes alone."""
        raise NotImplementedError

    def max_size(self, model: nn.Module) -> int:
        """The largest size that fits the backbone."""
        raise NotImplementedError

    def formula(self, model: nn.Module, ctx: RunContext) -> int:
        return self.count_for(model, self.size(model))

    def size(self, model: nn.Module) -> int:
        """The size option, resolved from `target_params` when set (recorded in the config)."""
        largest = self.max_size(model)
        target = self.cfg.target_params
        if target is not None:
            # count = slope * size + intercept: solve, then keep the closest of the neighbours.
            one, two = self.count_for(model, 1), self.count_for(model, 2)
            guess = round((target - (2 * one - two)) / (two - one))
            candidates = {min(max(s, 1), largest) for s in (guess - 1, guess, guess + 1)}
            best = min(sorted(candidates), key=lambda s: abs(self.count_for(model, s) - target))
            setattr(self.cfg, self.size_option, best)
        value = getattr(self.cfg, self.size_option)
        if not 1 <= value <= largest:
            raise ShpeftError(
                f"method '{self.kind}': {self.size_option} {value} does not fit the backbone "
                f"(between 1 and {largest})"
            )
        return value


_METHODS: dict[str, type[Method]] = {}


def register_method(kind: str) -> Callable[[type[Method]], type[Method]]:
    """Register a method under `kind`, the value of `methods.<id>.kind` that selects it."""

    def decorator(cls: type[Method]) -> type[Method]:
        cls.kind = kind
        cls.config_model = create_model(
            f"{cls.__name__}Params",
            __base__=cls.config_cls,
            __doc__=f"`kind: {kind}`: {_summary(cls)}",
            kind=(Literal[kind], Field(description=f"`{kind}`: {_summary(cls)}")),
        )
        _METHODS[kind] = cls
        return cls

    return decorator


def _summary(cls: type[Method]) -> str:
    """What the method trains and the paper it follows, for the schema and the reference docs."""
    reference = cls.reference.strip(" -")
    trains = f"besides the head, trains {cls.trains}" if cls.trains else "see its module"
    recipe = cls.recipe.describe() if cls.recipe.finetune else ""
    return (
        f"{trains}{f'; {reference}' if reference else ''}{f'; recipe: {recipe}' if recipe else ''}."
    )


def methods() -> dict[str, type[Method]]:
    """Every registered method by kind (every module of this package is imported first)."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")
    return dict(_METHODS)


def training_config(finetune: FinetuneConfig, method_config: MethodConfig) -> FinetuneConfig:
    """How a method trains: the shared `finetune` section, its kind's recipe over it, then the
    keys `methods.<id>.finetune` states."""
    recipe = FinetuneOverride(**methods()[method_config.kind].recipe.finetune)
    return merged(merged(finetune, recipe), method_config.finetune)


def tune_grid(grid: TuneGrid, method_config: MethodConfig) -> TuneGrid:
    """A method's tuning candidates: `tune.grid`, its kind's own search over it, then the lists
    `methods.<id>.tune` states."""
    searched = TuneGridOverride(**methods()[method_config.kind].recipe.grid)
    return merged(merged(grid, searched), method_config.tune)


def config_union() -> Any:
    """The type of a `methods.<id>` entry: one config model per kind, told apart by `kind`."""
    models = tuple(dict.fromkeys(cls.config_model for cls in methods().values()))
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007


def create_method(cfg: MethodConfig | dict[str, Any]) -> Method:
    """A method instance from its typed config (or its params entry, validated here)."""
    known = methods()
    kind = cfg.get("kind") if isinstance(cfg, dict) else cfg.kind
    if kind not in known:
        raise ShpeftError(f"unknown method kind '{kind}' (known: {', '.join(sorted(known))})")
    cls = known[kind]
    if isinstance(cfg, MethodConfig):  # a copy: a size chosen from target_params is the run's own
        return cls(cfg.model_copy(deep=True))
    try:
        return cls(cls.config_model.model_validate(cfg))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ShpeftError(f"method kind '{kind}': {problems}") from None
