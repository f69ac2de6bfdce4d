"""Backbone weights: every origin, exact loading, a tampered output.

Refused weights files (pickle payloads, another architecture, a sha256 mismatch) are in
test_hostile_inputs.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from helpers import tiny_backbone, tiny_weights
from shpeft.backbone.config import BackboneConfig, PretrainConfig
from shpeft.backbone.model import backbone_info, load_backbone
from shpeft.backbone.weights import pattern
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file
from shpeft.steps.backbone import build


@pytest.mark.parametrize("name", ["w.safetensors", "w.pth"])
def test_file_weights_load_exactly(tmp_path, name):
    state = tiny_weights(tmp_path / name)
    meta = build(tiny_backbone(weights=f"file:{tmp_path / name}"), tmp_path / "out")
    assert meta["file_sha256"] == sha256_file(tmp_path / name)
    model, info = load_backbone(tmp_path / "out", num_classes=3)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("head"))
    assert model.get_classifier().out_features == 3
    assert info.sha256 == meta["sha256"] == backbone_info(tmp_path / "out").sha256


def test_tampered_backbone_output_is_refused(tmp_path):
    build(tiny_backbone(), tmp_path / "out")
    with open(tmp_path / "out" / "backbone.safetensors", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ShpeftError, match="sha256 differs"):
        load_backbone(tmp_path / "out", num_classes=2)


def test_hub_path_with_a_local_file(tmp_path):
    """`weights: hub` goes through timm's pretrained loading; a local file stands in for the hub."""
    state = tiny_weights(tmp_path / "hub.safetensors")
    overlay = {"file": str(tmp_path / "hub.safetensors")}
    meta = build(tiny_backbone(weights="hub", pretrained_cfg_overlay=overlay), tmp_path / "out")
    assert meta["origin"] == "hub: vit_tiny_patch16_224"
    model, _ = load_backbone(tmp_path / "out", num_classes=2)
    assert torch.equal(
        model.state_dict()["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"]
    )


def test_unknown_model_and_missing_file(tmp_path):
    with pytest.raises(ShpeftError, match="unknown timm model"):
        build(BackboneConfig(model="vit_nonexistent", weights="none"), tmp_path / "o")
    with pytest.raises(ShpeftError, match="weights file not found"):
        build(tiny_backbone(weights=f"file:{tmp_path / 'nope.safetensors'}"), tmp_path / "o")


def test_embedded_pretraining_is_deterministic(tmp_path):
    """The same pretrain seed gives byte-identical backbone weights (initialisation included)."""
    pretrain = PretrainConfig(n_train=64, n_val=16, image_size=16, epochs=1, batch_size=32)
    cfg = tiny_backbone(weights="pretrain", pretrain=pretrain.model_dump())
    hashes = [build(cfg, tmp_path / name)["sha256"] for name in ("a", "b")]
    assert hashes[0] == hashes[1]


def test_every_registered_origin_is_a_valid_value():
    assert pattern() == r"^(none|pretrain|hub|file:.+)$"
    for value in ("none", "pretrain", "hub", "file:w.safetensors"):
        assert BackboneConfig(weights=value).weights == value
    for value in ("file:", "hub:x", "http://x"):
        with pytest.raises(ValueError, match="not one of none, pretrain, hub, file:<path>"):
            BackboneConfig(weights=value)


def test_hub_weights_offline_and_uncached_fail_with_one_clear_line(tmp_path):
    """What a user without internet sees for `weights: hub` (paper.yaml's ViT-B/16)."""
    code = (
        "from shpeft.backbone.config import BackboneConfig\n"
        "from shpeft.backbone.weights import create\n"
        "from shpeft.errors import ShpeftError\n"
        "try:\n"
        "    create(BackboneConfig(model='vit_tiny_patch16_224.augreg_in21k', model_args=None,"
        " weights='hub'), pretrained=True)\n"
        "except ShpeftError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(
        "backbone.weights: hub: the weights of 'vit_tiny_patch16_224.augreg_in21k' are neither "
        "reachable on the Hugging Face hub nor in its cache"
    ), done.stdout
    assert "shpeft fetch" in done.stdout and "file:<path>" in done.stdout
