"""Where a backbone's weights come from, as a registry of origins named by `backbone.weights`.

- `none`: random initialisation (the baseline that shows what pretraining buys);
- `hub`: timm's own pretrained loading (Hugging Face hub; needs internet); `pretrained_cfg_overlay`
  passes through to timm, e.g. `{file: path}` to load a local copy of the hub file;
- `pretrain`: trains the small demo backbone on a synthetic source domain
  (`shpeft.backbone.pretrain`), so that transfer is meaningful offline;
- `file:<path>`: a safetensors file or a torch checkpoint, read without executing pickled code.

An origin receives the config, the argument after `file:` and the job's `Compute` (where
training runs, for an origin that trains), and returns the headless model and a description of
where its weights came from.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file
from shpeft.train.devices import AUTO, Compute, to_numpy

if TYPE_CHECKING:
    from shpeft.backbone.config import BackboneConfig

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
HEAD_PREFIXES = ("head.", "fc.", "classifier.")

Origin = Callable[["BackboneConfig", str, Compute], tuple[torch.nn.Module, dict[str, Any]]]
_ORIGINS: dict[str, Origin] = {}


def register_origin(name: str) -> Callable[[Origin], Origin]:
    """Register an origin: `backbone.weights: <name>` (or `<name>:<argument>`) selects it."""

    def decorator(func: Origin) -> Origin:
        _ORIGINS[name] = func
        return func

    return decorator


def origin(weights: str) -> tuple[Origin, str]:
    """The origin a `backbone.weights` value names, and its argument (`file:<argument>`)."""
    name, _, argument = weights.partition(":")
    if name not in _ORIGINS or bool(argument) != (name == "file"):
        raise ValueError(f"not one of {', '.join(_forms())}")
    return _ORIGINS[name], argument


def _forms() -> list[str]:
    return [f"{name}:<path>" if name == "file" else name for name in _ORIGINS]


def pattern() -> str:
    """A regular expression of the accepted `backbone.weights` values (for the JSON schema)."""
    forms = [f"{re.escape(n)}:.+" if n == "file" else re.escape(n) for n in _ORIGINS]
    return f"^({'|'.join(forms)})$"


def create(cfg: BackboneConfig, num_classes: int = 0, pretrained: bool = False) -> torch.nn.Module:
    """The timm model of `cfg` (randomly initialised unless `pretrained`)."""
    import timm

    try:
        return timm.create_model(
            cfg.model,
            pretrained=pretrained,
            num_classes=num_classes,
            pretrained_cfg_overlay=cfg.pretrained_cfg_overlay if pretrained else None,
            **cfg.create_args,
        )
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ShpeftError(f"backbone.model: unknown timm model '{cfg.model}'") from None
        raise
    except OSError as exc:  # the hub's errors: offline, not cached, not found, HTTP
        if not pretrained:
            raise
        cause = (str(exc).splitlines() or [""])[0][:200]
        raise ShpeftError(
            f"backbone.weights: hub: the weights of '{cfg.model}' are neither reachable on the "
            f"Hugging Face hub nor in its cache ({type(exc).__name__}: {cause}). Where there is "
            "internet, run `shpeft fetch` to fill the cache (jobs on offline nodes then read it "
            "with HF_HUB_OFFLINE=1), or point at a local copy: weights: file:<path>"
        ) from None


def obtain(cfg: BackboneConfig, compute: Compute = AUTO) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The headless model with weights from the configured origin, and a description of it."""
    func, argument = origin(cfg.weights)
    return func(cfg, argument, compute)


@register_origin("none")
def _random(cfg: BackboneConfig, _: str, __: Compute) -> tuple[torch.nn.Module, dict[str, Any]]:
    torch.manual_seed(cfg.pretrain.seed)
    return create(cfg), {"origin": "random initialisation", "seed": cfg.pretrain.seed}


@register_origin("pretrain")
def _pretrained_here(
    cfg: BackboneConfig, _: str, compute: Compute
) -> tuple[torch.nn.Module, dict[str, Any]]:
    from shpeft.backbone.pretrain import pretrain

    device = compute.start(cfg.pretrain.seed)  # before the model's random initialisation
    model = create(cfg)
    report = pretrain(model, cfg.pretrain, device)
    return model, {"origin": "embedded pretraining", "pretrain": report}


@register_origin("hub")
def _hub(cfg: BackboneConfig, _: str, __: Compute) -> tuple[torch.nn.Module, dict[str, Any]]:
    model = create(cfg, pretrained=True)
    digest = hash_tensors(model.state_dict())
    if cfg.sha256 and cfg.sha256 != digest:
        raise ShpeftError(f"backbone.sha256: hub weights of '{cfg.model}' hash to {digest}")
    return model, {"origin": f"hub: {cfg.model}", "tensors_sha256": digest}


@register_origin("file")
def _file(cfg: BackboneConfig, argument: str, _: Compute) -> tuple[torch.nn.Module, dict[str, Any]]:
    path = Path(argument).expanduser()
    state = read_state_dict(path)
    digest = sha256_file(path)
    if cfg.sha256 and cfg.sha256 != digest:
        raise ShpeftError(f"{path}: sha256 is {digest}, but backbone.sha256 says {cfg.sha256}")
    model = create(cfg)
    fit_weights(model, state, str(path))
    return model, {"origin": f"file: {path.name}", "file_sha256": digest}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read tensors from safetensors or a torch checkpoint; never run code stored in the file."""
    if not path.is_file():
        raise ShpeftError(f"{path}: weights file not found")
    if path.suffix != ".safetensors" and path.suffix not in TORCH_SUFFIXES:
        raise ShpeftError(f"{path}: unknown weights format (use .safetensors or {TORCH_SUFFIXES})")
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except SafetensorError as exc:
        raise ShpeftError(f"{path}: corrupt safetensors file ({exc})") from None
    except pickle.UnpicklingError:  # torch's own text suggests loading it unsafely
        raise ShpeftError(
            f"{path}: refused; it is corrupt or holds pickled objects other than tensors "
            "(their code is never run; save a plain state_dict or use .safetensors)"
        ) from None
    except Exception as exc:  # a broken zip archive, an empty file, ...
        raise ShpeftError(
            f"{path}: corrupt torch checkpoint ({str(exc).splitlines()[0] or type(exc).__name__})"
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ShpeftError(f"{path}: holds no mapping of names to tensors")
    return state


def without_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}


def fit_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load `state` into `model` (head excluded), refusing weights of another architecture.

    timm's checkpoint filter of the model's family adapts foreign layouts first (e.g. position
    embeddings for another input size).
    """
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    state = without_head(state)
    expected = without_head(model.state_dict())
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        details = [
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if keys
        ]
        raise ShpeftError(
            f"{origin}: weights do not fit backbone '{type(model).__name__}' ({'; '.join(details)})"
        )
    model.load_state_dict(state, strict=False)


def hash_tensors(state: dict[str, torch.Tensor]) -> str:
    """A sha256 over tensor names and bytes, independent of any file format."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(to_numpy(state[key].contiguous().view(torch.uint8)).tobytes())
    return digest.hexdigest()
