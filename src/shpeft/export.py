"""A finished run as a model: reload what it trained onto its backbone, or merge it into one file.

`shpeft merge` writes a dense model (every tensor of the tuned network, sparse deltas folded into
their weights) that runs without shpeft: `timm.create_model(model, num_classes=..., **model_args)`
and `load_state_dict`, with those three recorded in the file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from shpeft import bound
from shpeft.backbone.model import BackboneInfo, load_backbone
from shpeft.errors import ShpeftError
from shpeft.methods.registry import Method, MethodConfig, RunContext, create_method
from shpeft.runs import RunFolder


def load_run(
    run_dir: str | Path, backbone_dir: str | Path, method_config: MethodConfig | dict[str, Any]
) -> tuple[nn.Module, Method, BackboneInfo]:
    """The tuned model of a finished run (in eval mode), its method, the backbone's description."""
    run = RunFolder(run_dir)
    if not run.file(RunFolder.CONFIG).is_file():
        raise ShpeftError(f"{run_dir}: not a finished run (no {RunFolder.CONFIG})")
    config = run.config()
    method = create_method(method_config)
    trained = run.file(method.trained_file)
    if not trained.is_file():
        raise ShpeftError(f"{trained}: not found; was the run trained with another method?")
    model, backbone = load_backbone(backbone_dir, len(config["data"]["class_names"]))
    method.load(model, trained, RunContext(config["dataset"], config["seed"], backbone))
    return model.eval(), method, backbone


def merge_run(
    run_dir: str | Path,
    backbone_dir: str | Path,
    method_config: MethodConfig | dict[str, Any],
    out_file: str | Path,
) -> Path:
    """Write the run's tuned model as one dense safetensors file."""
    model, method, backbone = load_run(run_dir, backbone_dir, method_config)
    method.fold(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    plain, _ = load_backbone(backbone_dir, model.get_classifier().out_features)
    if set(state) != set(plain.state_dict()):
        raise ShpeftError(
            f"{run_dir}: method kind '{method.kind}' adds modules that cannot be folded into "
            "the backbone's weights; load the run with shpeft.export.load_run instead"
        )
    return bound.write(
        out_file,
        state,
        backbone.sha256,
        model=backbone.config.model,
        model_args=json.dumps(backbone.config.create_args),
        num_classes=str(model.get_classifier().out_features),
        run=str(run_dir),
    )


def load_merged(path: str | Path) -> nn.Module:
    """A timm model built from a merged file's metadata, with its tensors loaded."""
    import timm

    with bound.read(path, None, what="merged model") as reader:
        metadata, state = reader.metadata, reader.all()
    model = timm.create_model(
        metadata["model"],
        num_classes=int(metadata["num_classes"]),
        **json.loads(metadata["model_args"]),
    )
    model.load_state_dict(state)
    return model.eval()
