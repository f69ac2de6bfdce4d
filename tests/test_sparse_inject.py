"""Injecting sparse deltas into a ViT: frozen elsewhere, tiny files, exact merge, strict files."""

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


def _head(model):
    return dict(model.head.named_parameters(prefix="head"))


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
    layers = inject(model, selection, "test")
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
    save_delta(tmp_path / "delta.safetensors", model, _head(model), "abc")
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
    inject(model, _selection(model), "test")
    save_delta(tmp_path / "d.safetensors", model, _head(model), "aaa")
    with pytest.raises(ShpeftError, match="made for backbone aaa, not for this one"):
        load_delta(tmp_path / "d.safetensors", _vit(), "bbb")


def test_convolution_bias_and_norm_entries_train_and_merge_exactly(tmp_path):
    """The patch embedding's convolution, a bias of a Linear whose weight is sparse too, and a
    norm's scale: only the selected entries move, and merging gives the same outputs."""
    model = _vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    selection = {
        "patch_embed.proj.weight": np.array([0, 7, 300]),
        "blocks.0.attn.qkv.bias": np.array([1, 95]),
        "blocks.0.attn.qkv.weight": np.array([2, 500]),
        "blocks.1.norm1.weight": np.array([4]),
    }
    layers = inject(model, selection, "test")
    assert set(layers) == set(selection)
    _train_a_little(model, layers)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tuned = model(x)
    save_delta(tmp_path / "d.safetensors", model, _head(model), "abc")
    merged = merge(model).state_dict()
    assert set(merged) == set(before)  # plain modules again, the same names
    for name, value in before.items():
        changed = (merged[name] != value).flatten().nonzero().flatten().tolist()
        assert changed == (selection[name].tolist() if name in selection else [])
    fresh = _vit()
    load_delta(tmp_path / "d.safetensors", fresh, "abc")
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), tuned, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x), tuned, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        (np.array([3, 9, 3]), "lists a position more than once"),
        (np.array([0, 32 * 96]), "lies outside its 3072 entries"),
        (np.array([-1]), "lies outside"),
    ],
)
def test_a_delta_file_with_bad_positions_is_refused_naming_it(tmp_path, positions, message):
    path = tmp_path / "bad.safetensors"
    tensors = {
        "blocks.0.attn.qkv.weight.indices": torch.as_tensor(positions),
        "blocks.0.attn.qkv.weight.values": torch.zeros(len(positions)),
        "dense/head.bias": torch.zeros(3),
    }
    save_file(tensors, path, metadata={"backbone_sha256": "abc"})
    with pytest.raises(ShpeftError, match=rf"bad\.safetensors: '.*qkv\.weight' .*{message}"):
        load_delta(path, _vit(), "abc")
    with pytest.raises(ShpeftError, match=f"mask.st: .*{message}"):
        inject(_vit(), {"blocks.0.attn.qkv.weight": positions}, "mask.st")


@pytest.mark.parametrize("name", ["pos_embedding", "blocks.9.mlp.fc1.weight"])
def test_a_selection_of_an_unknown_tensor_is_refused(name):
    with pytest.raises(ShpeftError, match=f"mask.st: '{name}' is not a tensor of this backbone"):
        inject(_vit(), {name: np.array([0])}, "mask.st")


def test_a_delta_file_of_an_older_format_or_short_values_is_refused(tmp_path):
    model = _vit()
    inject(model, _selection(model), "test")
    save_delta(tmp_path / "old.safetensors", model, {}, "abc")  # no dense tensors: no head
    with pytest.raises(ShpeftError, match="old.safetensors: holds no tensors trained in full"):
        load_delta(tmp_path / "old.safetensors", _vit(), "abc")
    tensors = {
        "blocks.0.attn.qkv.weight.indices": torch.tensor([1, 2]),
        "blocks.0.attn.qkv.weight.values": torch.zeros(1),
        "dense/head.bias": torch.zeros(3),
    }
    save_file(tensors, tmp_path / "short.safetensors", metadata={"backbone_sha256": "abc"})
    with pytest.raises(ShpeftError, match="short.safetensors: '.*' has no values for each"):
        load_delta(tmp_path / "short.safetensors", _vit(), "abc")


def test_vit_b16_delta_at_1e4_is_under_one_megabyte(tmp_path):
    """ViT-B/16 has 85.8 M backbone weights: 1e-4 of them as int64 positions and fp32 values."""
    k = round(1e-4 * 85_798_656)
    tensors = {
        "blocks.0.attn.qkv.weight.indices": torch.arange(k, dtype=torch.int64),
        "blocks.0.attn.qkv.weight.values": torch.zeros(k),
        "dense/head.weight": torch.zeros(2, 768),
        "dense/head.bias": torch.zeros(2),
    }
    save_file(tensors, tmp_path / "d.safetensors", metadata={"backbone_sha256": "x"})
    assert (tmp_path / "d.safetensors").stat().st_size < 1_000_000


def test_backprop_stopping_below_the_lowest_entry_gives_the_same_gradients():
    """Entries only in the last block: autograd never enters block 0, yet gradients are exact."""
    x = torch.randn(2, 3, 16, 16)
    grads = []
    for run_fully in (False, True):
        model = _vit()
        layers = inject(model, {"blocks.1.mlp.fc1.weight": np.array([3, 40, 41, 500])}, "test")
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
