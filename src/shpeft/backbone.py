"""Backbone loading, with weights described as data: `backbone.weights` says where they come from.

- `none`: random initialisation (the baseline that shows what pretraining buys).
- `hub`: timm's own pretrained loading (Hugging Face hub; needs internet). `pretrained_cfg_overlay`
  passes through to timm, e.g. `{file: path}` to load a local copy of the hub file.
- `pretrain`: the embedded default; trains the small demo backbone on a synthetic source domain
  (see `shpeft.pretrain`), so that transfer is meaningful offline.
- `file:<path>`: a safetensors file or a torch checkpoint, read without executing pickled code.

The step writes `results/backbone/backbone.safetensors` (no classifier head) and `backbone.json`
(model, arguments, origin, sha256). Every later step loads from there and checks the hash.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, sha256_file, write_json
from shpeft.params import build

log = logging.getLogger(__name__)

WEIGHTS_FILE = "backbone.safetensors"
META_FILE = "backbone.json"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass
class PretrainConfig:
    """The embedded source-domain pretraining of the demo backbone (`weights: pretrain`)."""

    kind: str = "shapes"
    n_train: int = 4000
    n_val: int = 400
    image_size: int = 32
    epochs: int = 3
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.5
    seed: int = 0


@dataclass
class BackboneConfig:
    #: A timm model name, e.g. `vit_base_patch16_224.augreg_in21k`.
    model: str = "vit_tiny_patch16_224"
    #: Extra keyword arguments for `timm.create_model` (img_size, patch_size, depth, ...). An
    #: overlay can merge keys into a mapping but not remove them: `null` clears the base file's.
    model_args: dict[str, Any] | None = field(default_factory=dict)
    #: none | hub | pretrain | file:<path>
    weights: str = "pretrain"
    #: If set, the weights file (file:) or the loaded tensors (hub) must have this sha256.
    sha256: str | None = None
    #: Passed to timm with `weights: hub`, e.g. `{file: local/copy.safetensors}`.
    pretrained_cfg_overlay: dict[str, Any] | None = None
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self) -> None:
        self.model_args = dict(self.model_args or {})


def create(cfg: BackboneConfig, num_classes: int = 0, pretrained: bool = False) -> torch.nn.Module:
    import timm

    try:
        return timm.create_model(
            cfg.model,
            pretrained=pretrained,
            num_classes=num_classes,
            pretrained_cfg_overlay=cfg.pretrained_cfg_overlay if pretrained else None,
            **cfg.model_args,
        )
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ShpeftError(f"backbone.model: unknown timm model '{cfg.model}'") from None
        raise


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read tensors from safetensors or a torch checkpoint; never run code stored in the file."""
    if not path.is_file():
        raise ShpeftError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        if path.suffix in TORCH_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ShpeftError(
                f"{path}: unknown weights format (use .safetensors or {TORCH_SUFFIXES})"
            )
    except ShpeftError:
        raise
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
    return {k: v for k, v in state.items() if not k.startswith(("head.", "fc.", "classifier."))}


def fit_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load `state` into `model` (head excluded), refusing weights of another architecture."""
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


def _hash_tensors(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def obtain_weights(cfg: BackboneConfig) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The headless model with weights from the configured origin, and a description of it."""
    if cfg.weights == "none":
        torch.manual_seed(cfg.pretrain.seed)
        return create(cfg), {"origin": "random initialisation", "seed": cfg.pretrain.seed}
    if cfg.weights == "pretrain":
        from shpeft.pretrain import pretrain
        from shpeft.training import seed_everything

        seed_everything(cfg.pretrain.seed)  # before the model's random initialisation
        model = create(cfg)
        report = pretrain(model, cfg.pretrain)
        return model, {"origin": "embedded pretraining", "pretrain": report}
    if cfg.weights == "hub":
        model = create(cfg, pretrained=True)
        digest = _hash_tensors(model.state_dict())
        if cfg.sha256 and cfg.sha256 != digest:
            raise ShpeftError(f"backbone.sha256: hub weights of '{cfg.model}' hash to {digest}")
        return model, {"origin": f"hub: {cfg.model}", "tensors_sha256": digest}
    if cfg.weights.startswith("file:"):
        path = Path(cfg.weights.removeprefix("file:")).expanduser()
        state = read_state_dict(path)
        digest = sha256_file(path)
        if cfg.sha256 and cfg.sha256 != digest:
            raise ShpeftError(f"{path}: sha256 is {digest}, but backbone.sha256 says {cfg.sha256}")
        model = create(cfg)
        fit_weights(model, state, str(path))
        return model, {"origin": f"file: {path.name}", "file_sha256": digest}
    raise ShpeftError(
        f"backbone.weights: '{cfg.weights}' is not none, hub, pretrain or file:<path>"
    )


def build_backbone(cfg: BackboneConfig, out_dir: str | Path) -> dict[str, Any]:
    """The `backbone` step: write the headless weights and their description to `out_dir`."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        model, origin = obtain_weights(cfg)
        save_file(without_head(model.state_dict()), tmp / WEIGHTS_FILE)
        meta = {
            "config": asdict(cfg),
            "num_params": sum(p.numel() for n, p in model.named_parameters()),
            "sha256": sha256_file(tmp / WEIGHTS_FILE),
            **origin,
        }
        write_json(tmp / META_FILE, meta)
    log.info("backbone %s (%s): sha256 %s", cfg.model, meta["origin"], meta["sha256"])
    return meta


def check_backbone(path: Path, metadata: dict[str, str] | None, backbone_sha256: str) -> None:
    """Refuse a file made for another backbone (its metadata records the backbone's sha256)."""
    recorded = (metadata or {}).get("backbone_sha256")
    if recorded != backbone_sha256:
        raise ShpeftError(
            f"{path}: made for backbone {recorded}, not for this one ({backbone_sha256}); "
            "rerun the steps that depend on the backbone"
        )


def load_backbone(backbone_dir: str | Path, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """A model with the step's weights and a fresh `num_classes` head; the hash is checked."""
    backbone_dir = Path(backbone_dir)
    meta = read_json(backbone_dir / META_FILE)
    path = backbone_dir / WEIGHTS_FILE
    if sha256_file(path) != meta["sha256"]:
        raise ShpeftError(f"{path}: sha256 differs from the one recorded in {META_FILE}")
    cfg = build(BackboneConfig, meta["config"])
    model = create(cfg, num_classes=num_classes)
    fit_weights(model, load_file(path), str(path))
    return model, meta
