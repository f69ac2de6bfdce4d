"""Compute nodes without internet: `shpeft fetch` fills the caches, jobs then load offline.

No hub can be reached here, so the Hugging Face cache is filled the way a download leaves it
(a snapshot of the model's repository holding its weight file) and everything runs offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from conftest import LAYOUT, ROOT, TINY, layered
from helpers import TINY_VIT, tiny_weights
from shpeft.backbone.model import load_backbone
from shpeft.fetch import fetch
from shpeft.fileio import read_json, sha256_file

HUB_MODEL = "vit_tiny_patch16_224.augreg_in21k"
REPO = "models--timm--vit_tiny_patch16_224.augreg_in21k"


def _hub_cache(root: Path) -> tuple[Path, dict]:
    """A Hugging Face cache holding the tiny ViT's weights as the hub file."""
    commit = "0" * 40
    snapshot = root / REPO / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / REPO / "refs").mkdir()
    (root / REPO / "refs" / "main").write_text(commit)
    # As the tiny params build it (their model_args merge into the demo's: average pooling).
    weights = tiny_weights(snapshot / "model.safetensors", class_token=False, global_pool="avg")
    return snapshot / "model.safetensors", weights


def test_fetched_hub_weights_load_offline(in_tmp):
    """As on a login node, then a compute node: the same commands, the cache shared, offline."""
    file, state = _hub_cache(in_tmp / "hub")
    overlay = in_tmp / "hub.yaml"
    overlay.write_text(f"backbone: {{model: {HUB_MODEL}, model_args: {TINY_VIT}, weights: hub}}\n")
    argv = ["--params", str(ROOT / "params.yaml"), "--params", str(TINY), "--params", str(overlay)]
    env = {**os.environ, "HF_HUB_CACHE": str(in_tmp / "hub"), "HF_HUB_OFFLINE": "1"}
    for command in ("fetch", "backbone"):
        done = subprocess.run(
            [sys.executable, "-m", "shpeft.cli", command, *argv], env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    (record,) = read_json(LAYOUT.root / "fetched.json")
    assert record["file"] == str(file) and record["sha256"] == sha256_file(file)
    meta = read_json(LAYOUT.backbone_dir() / "backbone.json")
    assert meta["origin"] == f"hub: {HUB_MODEL}"
    assert meta["tensors_sha256"] == record["tensors_sha256"]  # the tensors' hash, not the file's
    model, _ = load_backbone(LAYOUT.backbone_dir(), num_classes=2)
    qkv = "blocks.0.attn.qkv.weight"
    assert torch.equal(model.state_dict()[qkv], state[qkv])


def test_fetch_records_present_medmnist_files_without_downloading(in_tmp):
    root = in_tmp / "medmnist"
    root.mkdir()
    arrays = {}
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = np.zeros((n, 28, 28), np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    np.savez(root / "breastmnist.npz", **arrays)
    overlay = f"""
grid: {{datasets: [breast]}}
datasets: {{breast: {{source: medmnist, name: breastmnist, root: {root}, image_size: 28,
                     download: true}}}}
backbone: {{weights: none}}
sweeps: {{budget: {{datasets: null}}, rho: {{datasets: null}}}}
"""
    (record,) = fetch(layered(in_tmp, overlay))
    assert record == {
        "what": "dataset breast",
        "file": str(root / "breastmnist.npz"),
        "sha256": sha256_file(root / "breastmnist.npz"),
    }
