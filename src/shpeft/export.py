"""A finished run as a model: reload what it trained onto its backbone, or merge it into one file.

`shpeft merge` writes a dense model (every tensor of the tuned network, sparse deltas folded into
their weights) that runs without shpeft: `timm.create_model(model, num_classes=..., **model_args)`
and `load_state_dict`, with those three recorded in the file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from shpeft.backbone import load_backbone
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json
from shpeft.methods.registry import Method, RunContext, create_method


def load_run(
    run_dir: str | Path, backbone_dir: str | Path, method_params: dict[str, Any]
) -> tuple[nn.Module, Method, dict[str, Any]]:
    """The tuned model of a finished run (in eval mode), its method, the backbone's description."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise ShpeftError(f"{run_dir}: not a finished run (no config.json)")
    config = read_json(config_file)
    method = create_method(method_params)
    trained = run_dir / method.trained_file
    if not trained.is_file():
        raise ShpeftError(f"{trained}: not found; was the run trained with another method?")
    model, meta = load_backbone(backbone_dir, len(config["data"]["class_names"]))
    method.load(model, trained, RunContext(config["dataset"], config["seed"], meta))
    return model.eval(), method, meta


def merge_run(
    run_dir: str | Path,
    backbone_dir: str | Path,
    method_params: dict[str, Any],
    out_file: str | Path,
) -> Path:
    """Write the run's tuned model as one dense safetensors file."""
    model, method, meta = load_run(run_dir, backbone_dir, method_params)
    method.fold(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    plain, _ = load_backbone(backbone_dir, model.get_classifier().out_features)
    if set(state) != set(plain.state_dict()):
        raise ShpeftError(
            f"{run_dir}: method kind '{method.cfg.kind}' adds modules that cannot be folded into "
            "the backbone's weights; load the run with shpeft.export.load_run instead"
        )
    metadata = {
        "model": meta["config"]["model"],
        "model_args": json.dumps(meta["config"]["model_args"]),
        "num_classes": str(model.get_classifier().out_features),
        "backbone_sha256": meta["sha256"],
        "run": str(run_dir),
    }
    out_file = Path(out_file)
    with atomic_path(out_file) as tmp:
        save_file(state, tmp, metadata=metadata)
    return out_file


def load_merged(path: str | Path) -> nn.Module:
    """A timm model built from a merged file's metadata, with its tensors loaded."""
    import timm
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    model = timm.create_model(
        metadata["model"],
        num_classes=int(metadata["num_classes"]),
        **json.loads(metadata["model_args"]),
    )
    model.load_state_dict(load_file(path))
    return model.eval()
