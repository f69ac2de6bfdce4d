"""Injecting sparse deltas into a ViT: frozen elsewhere, tiny files, exact merge, hash checks."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from shpeft.errors import ShpeftError
from shpeft.selection.importance import eligible_parameters
from shpeft.selection.masks import split_flat
from shpeft.sparse.inject import inject, load_delta, merge, save_delta

ARGS = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}


def _vit(seed=0):
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", num_classes=3, **ARGS).eval()


def _selection(model, k=40, seed=0):
    params = eligible_parameters(model, ["blocks.*.attn.qkv.weight", "blocks.*.mlp.fc2.weight"])
    sizes = {name: p.numel() for name, p in params.items()}
    flat = np.random.default_rng(seed).choice(sum(sizes.values()), size=k, replace=False)
    return split_flat(flat, sizes)


def _train_a_little(model, layers):
    for param in model.parameters():
        param.requires_grad_(False)
    params = [layer.values for layer in layers.values()]
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=0.05)
    x = torch.randn(4, 3, 16, 16)
    for _ in range(3):
        optimizer.zero_grad()
        model(x).logsumexp(1).mean().backward()
        optimizer.step()


def test_split_flat_counts():
    selection = split_flat(np.array([0, 5, 10, 11, 29]), {"a": 10, "b": 2, "c": 20})
    assert {k: v.tolist() for k, v in selection.items()} == {"a": [0, 5], "b": [0, 1], "c": [17]}


def test_only_selected_entries_change_and_merge_reproduces_outputs(tmp_path):
    model = _vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    selection = _selection(model)
    layers = inject(model, selection)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), _vit()(x))  # zero deltas change nothing
    _train_a_little(model, layers)
    with torch.no_grad():
        tuned = model(x)
    for name, layer in layers.items():
        changed = layer.merged_weight() != before[name]
        mask = torch.zeros_like(changed)
        mask.view(-1)[torch.as_tensor(selection[name])] = True
        assert not torch.any(changed & ~mask)  # unselected entries bitwise unchanged
    save_delta(tmp_path / "delta.safetensors", model, {}, "abc")
    merged = merge(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), tuned, atol=1e-5, rtol=0)
    # Loading the delta onto a fresh copy of the backbone gives the same outputs.
    fresh = _vit()
    load_delta(tmp_path / "delta.safetensors", fresh, "abc")
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), tuned, atol=1e-5, rtol=0)


def test_delta_for_another_backbone_is_refused(tmp_path):
    model = _vit()
    inject(model, _selection(model))
    save_delta(tmp_path / "d.safetensors", model, {}, "aaa")
    with pytest.raises(ShpeftError, match="made for backbone aaa, not for this one"):
        load_delta(tmp_path / "d.safetensors", _vit(), "bbb")


def test_a_selection_on_a_non_linear_is_refused():
    with pytest.raises(ShpeftError, match="not the weight of a Linear"):
        inject(_vit(), {"pos_embed": np.array([0])})


def test_vit_b16_delta_at_1e4_is_under_one_megabyte(tmp_path):
    """ViT-B/16 has 85.8 M backbone weights: 1e-4 of them as int64 positions and fp32 values."""
    k = round(1e-4 * 85_798_656)
    tensors = {
        "blocks.0.attn.qkv.weight.indices": torch.arange(k, dtype=torch.int64),
        "blocks.0.attn.qkv.weight.values": torch.zeros(k),
        "head/weight": torch.zeros(2, 768),
        "head/bias": torch.zeros(2),
    }
    save_file(tensors, tmp_path / "d.safetensors", metadata={"backbone_sha256": "x"})
    assert (tmp_path / "d.safetensors").stat().st_size < 1_000_000


def test_backprop_stopping_below_the_lowest_entry_gives_the_same_gradients():
    """Entries only in the last block: autograd never enters block 0, yet gradients are exact."""
    x = torch.randn(2, 3, 16, 16)
    grads = []
    for run_fully in (False, True):
        model = _vit()
        layers = inject(model, {"blocks.1.mlp.fc1.weight": np.array([3, 40, 41, 500])})
        for param in model.parameters():
            param.requires_grad_(False)
        layer = layers["blocks.1.mlp.fc1.weight"]
        layer.values.requires_grad_(True)
        entered: list[int] = []
        model.blocks[0].register_full_backward_pre_hook(lambda *_, seen=entered: seen.append(1))
        if run_fully:  # make the input of block 0 require grad, so backprop runs through it
            model.blocks[0].register_forward_pre_hook(
                lambda _, args: (args[0].detach().requires_grad_(),)
            )
        model(x).logsumexp(1).sum().backward()
        assert bool(entered) == run_fully
        grads.append(layer.values.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
