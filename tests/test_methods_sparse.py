"""SH-PEFT and its ablations trained for real: only mask entries change, deltas reload and merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import LAYOUT, layered
from shpeft.cli import main
from shpeft.data.prepared import PreparedDataset
from shpeft.errors import ShpeftError
from shpeft.export import load_merged, load_run, merge_run
from shpeft.runs import RunFolder
from shpeft.selection.masks import load_mask
from shpeft.sparse.inject import merge
from shpeft.steps import run_job
from shpeft.train.config import AugmentConfig
from shpeft.train.preprocess import Preprocess

K = 60
OVERLAY = f"""
backbone: {{weights: none}}
finetune: {{lr: 0.05}}
score: {{batches: 2, batch_size: 16, probe_epochs: 1}}
masks: {{hybrid: {{budget_count: {K}}}}}
"""


@pytest.fixture
def masked(in_tmp):
    """A tiny dataset, a random tiny backbone, its scores and a hybrid mask of K entries."""
    params = layered(in_tmp, OVERLAY)
    run_job(params, "prepare", dataset="tiny_us")
    run_job(params, "backbone")
    run_job(params, "score", dataset="tiny_us", seed=0)
    run_job(params, "mask", dataset="tiny_us", variant="hybrid", seed=0)
    return params


def _train(params, method, seed=0):
    run_job(params, "finetune", dataset="tiny_us", method=method, seed=seed)
    return RunFolder(LAYOUT.run_dir("tiny_us", method, seed)).metrics()


def _flat_changes(model, backbone_state):
    """Per weight name, the flat positions where the tuned model differs from the backbone."""
    tuned = {k: v for k, v in model.state_dict().items() if k in backbone_state}
    return {
        name: torch.nonzero((tuned[name] != value).flatten()).flatten().numpy()
        for name, value in backbone_state.items()
        if name in tuned
    }


def test_sh_peft_changes_only_mask_entries_and_saves_a_small_delta(masked):
    metrics = _train(masked, "sh-peft")
    run = LAYOUT.run_dir("tiny_us", "sh-peft", 0)
    assert metrics["trainable_backbone"] == K and metrics["trainable_head"] == 32 * 3 + 3
    delta = load_file(run / "delta.safetensors")
    assert sum(v.numel() for k, v in delta.items() if k.endswith(".values")) == K
    model, _, info = load_run(run, LAYOUT.backbone_dir(), masked.methods["sh-peft"])
    merge(model)
    backbone = load_file(LAYOUT.backbone_dir() / "backbone.safetensors")
    mask = load_mask(LAYOUT.mask_file("tiny_us", "hybrid", 0), info.sha256)
    changed = _flat_changes(model, backbone)
    for name, positions in changed.items():
        allowed = mask.selection.get(name, np.array([], dtype=np.int64))
        assert np.isin(positions, allowed).all(), name  # unselected weights bitwise unchanged
    assert sum(len(p) for p in changed.values()) > K // 2  # and the selected ones did train


def test_reloaded_and_merged_models_reproduce_the_run(masked, in_tmp):
    _train(masked, "sh-peft")
    run = LAYOUT.run_dir("tiny_us", "sh-peft", 0)
    model, _, _ = load_run(run, LAYOUT.backbone_dir(), masked.methods["sh-peft"])
    data = PreparedDataset.load(LAYOUT.data_dir("tiny_us"))
    images, labels = data.part("test")
    prep = Preprocess(model, AugmentConfig())
    x = prep(torch.from_numpy(images))
    with torch.no_grad():
        tuned = model(x)
    predicted = np.loadtxt(run / "predictions.csv", delimiter=",", skiprows=1, usecols=2)
    assert np.array_equal(tuned.argmax(1).numpy(), predicted)
    argv = ["merge", "--dataset", "tiny_us", "--method", "sh-peft", "--seed", "0"]
    params = [arg for file in masked.files for arg in ("--params", file)]
    assert main([*argv, "--out", "merged.safetensors", *params]) == 0
    merged = load_merged(in_tmp / "merged.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(merged(x), tuned, atol=1e-5, rtol=0)
    # The same through the library call, for a dense method too.
    _train(masked, "linear")
    linear_run = LAYOUT.run_dir("tiny_us", "linear", 0)
    out = merge_run(linear_run, LAYOUT.backbone_dir(), masked.methods["linear"], "lin.st")
    linear, _, _ = load_run(linear_run, LAYOUT.backbone_dir(), masked.methods["linear"])
    with torch.no_grad():
        torch.testing.assert_close(load_merged(out)(x), linear(x), atol=1e-5, rtol=0)


def test_sparse_random_draws_the_same_budget_by_seed(masked):
    first = _train(masked, "sparse-random", seed=0)
    assert first["trainable_backbone"] == K
    positions = {}
    for seed in (0, 1):
        if seed:  # its own hybrid mask gives the budget; the positions are drawn by the seed
            run_job(masked, "score", dataset="tiny_us", seed=seed)
            run_job(masked, "mask", dataset="tiny_us", variant="hybrid", seed=seed)
            _train(masked, "sparse-random", seed=seed)
        delta = load_file(LAYOUT.run_dir("tiny_us", "sparse-random", seed) / "delta.safetensors")
        positions[seed] = {k: v for k, v in delta.items() if k.endswith(".indices")}
    hybrid = load_file(LAYOUT.mask_file("tiny_us", "hybrid", 0))
    assert positions[0].keys() != hybrid.keys() or any(
        not torch.equal(positions[0][f"{k}.indices"], v) for k, v in hybrid.items()
    )
    assert any(
        k not in positions[1] or not torch.equal(v, positions[1][k])
        for k, v in positions[0].items()
    )


def test_a_mask_of_another_backbone_is_refused(masked, in_tmp):
    # Another random initialisation, another sha256.
    run_job(layered(in_tmp, OVERLAY + "backbone: {pretrain: {seed: 7}}\n"), "backbone")
    with pytest.raises(ShpeftError, match="hybrid.safetensors: made for backbone .* not for this"):
        _train(masked, "sh-peft")
    assert not LAYOUT.run_dir("tiny_us", "sh-peft", 0).exists()


def test_a_missing_mask_is_reported(masked, in_tmp):
    params = layered(in_tmp, OVERLAY + "methods: {sh-peft: {mask: taskagnostic}}\n")
    with pytest.raises(ShpeftError, match="taskagnostic.safetensors: mask file not found"):
        _train(params, "sh-peft")
