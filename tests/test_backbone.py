"""Backbone weights: every origin, exact loading, a tampered output.

Refused weights files (pickle payloads, another architecture, a sha256 mismatch) are in
test_hostile_inputs.py.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from shpeft.backbone import (
    BackboneConfig,
    PretrainConfig,
    build_backbone,
    create,
    load_backbone,
)
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file

ARGS = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}


def _cfg(**overrides) -> BackboneConfig:
    return BackboneConfig(model="vit_tiny_patch16_224", model_args=dict(ARGS), **overrides)


def _weights(path, **args):
    model = create(BackboneConfig(model="vit_tiny_patch16_224", model_args={**ARGS, **args}))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"state_dict": state}, path)
    return state


@pytest.mark.parametrize("name", ["w.safetensors", "w.pth"])
def test_file_weights_load_exactly(tmp_path, name):
    state = _weights(tmp_path / name)
    meta = build_backbone(_cfg(weights=f"file:{tmp_path / name}"), tmp_path / "out")
    assert meta["file_sha256"] == sha256_file(tmp_path / name)
    model, _ = load_backbone(tmp_path / "out", num_classes=3)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("head"))
    assert model.get_classifier().out_features == 3


def test_tampered_backbone_output_is_refused(tmp_path):
    build_backbone(_cfg(weights="none"), tmp_path / "out")
    with open(tmp_path / "out" / "backbone.safetensors", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ShpeftError, match="sha256 differs"):
        load_backbone(tmp_path / "out", num_classes=2)


def test_hub_path_with_a_local_file(tmp_path):
    """`weights: hub` goes through timm's pretrained loading; a local file stands in for the hub."""
    state = _weights(tmp_path / "hub.safetensors")
    cfg = _cfg(weights="hub", pretrained_cfg_overlay={"file": str(tmp_path / "hub.safetensors")})
    meta = build_backbone(cfg, tmp_path / "out")
    assert meta["origin"] == "hub: vit_tiny_patch16_224"
    model, _ = load_backbone(tmp_path / "out", num_classes=2)
    assert torch.equal(
        model.state_dict()["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"]
    )


def test_unknown_model_and_missing_file(tmp_path):
    with pytest.raises(ShpeftError, match="unknown timm model"):
        build_backbone(BackboneConfig(model="vit_nonexistent", weights="none"), tmp_path / "o")
    with pytest.raises(ShpeftError, match="weights file not found"):
        build_backbone(_cfg(weights=f"file:{tmp_path / 'nope.safetensors'}"), tmp_path / "o")


def test_embedded_pretraining_is_deterministic(tmp_path):
    """The same pretrain seed gives byte-identical backbone weights (initialisation included)."""
    pretrain = PretrainConfig(n_train=64, n_val=16, image_size=16, epochs=1, batch_size=32)
    hashes = [
        build_backbone(_cfg(weights="pretrain", pretrain=pretrain), tmp_path / name)["sha256"]
        for name in ("a", "b")
    ]
    assert hashes[0] == hashes[1]
