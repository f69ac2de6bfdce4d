"""Every registered method trains for real on a tiny task, touches only its own parameters, has the
trainable count its formula says, and saves and reloads what it trained."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from helpers import tiny_backbone
from shpeft.backbone.model import load_backbone
from shpeft.errors import ShpeftError
from shpeft.fileio import write_json
from shpeft.methods.locations import OUTSIDE, locations
from shpeft.methods.registry import RunContext, create_method, methods
from shpeft.selection.importance import ScoreConfig
from shpeft.selection.masks import MaskConfig
from shpeft.steps.backbone import build as build_backbone
from shpeft.steps.mask import build as build_mask
from shpeft.steps.score import score_dataset
from shpeft.train.config import AugmentConfig, FinetuneConfig
from shpeft.train.loop import fit, predict
from shpeft.train.preprocess import Preprocess

ROWS = 2 * (96 + 32 + 128 + 32)  # output neurons of qkv, proj, fc1, fc2 in both blocks
K = 60

# Each method's options for the tiny ViT, and its trainable backbone count worked out by hand.
CASES = {
    "full": ({}, 27616),
    "linear": ({}, 0),
    "bitfit": ({}, 2 * (32 + 96 + 32 + 32 + 128 + 32) + 32 + 32),  # blocks, patch embed, norm
    "ln-tune": ({}, 5 * 2 * 32),  # norm1 and norm2 of 2 blocks, final norm
    "lora": ({"rank": 2}, 2 * 2 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))),
    "vpt-shallow": ({"length": 3}, 3 * 32),
    "vpt-deep": ({"length": 3}, 2 * 3 * 32),
    "adapter": ({"width": 4}, 2 * (2 * 32 * 4 + 4 + 32)),
    "ssf": ({}, 2 * (32 + 2 * (32 + 96 + 32 + 32 + 128 + 32) + 32)),
    "sh-peft": ({"mask": "hybrid"}, K),
    "spt": ({"mask": "spt"}, K),
    "gps": ({"mask": "gps"}, ROWS),
    "sparse-random": ({"mask": "hybrid"}, K),
}
MASKS = {
    "hybrid": MaskConfig(budget_count=K),
    "spt": MaskConfig(task_specific="grad_l2", rho=1.0, budget_count=K),
    "gps": MaskConfig(task_specific="grad_l1", rule="per_neuron", per_neuron=1),
}
TRAIN = FinetuneConfig(
    epochs=4, batch_size=16, lr=0.01, augment=AugmentConfig(hflip=0, translate=0, scale=0)
)


def stripes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16 px grey images: horizontal stripes, vertical stripes or a checkerboard, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    yy, xx = np.mgrid[:16, :16]
    images = []
    for label in labels:
        half, phase = rng.integers(2, 4), rng.integers(0, 4)
        pattern = [
            ((yy + phase) // half) % 2,
            ((xx + phase) // half) % 2,
            ((xx + phase) // 2 + (yy + phase) // 2) % 2,
        ][label]
        image = np.clip(pattern * 120 + 60 + rng.normal(0, 25, (16, 16)), 0, 255)
        images.append(np.repeat(image[..., None], 3, axis=-1))
    return np.stack(images).astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A prepared stripes dataset, a random tiny backbone, its importance scores and masks."""
    root = tmp_path_factory.mktemp("methods")
    parts = [stripes(150, 0), stripes(30, 1), stripes(60, 2)]
    data = root / "data"
    data.mkdir()
    np.save(data / "images.npy", np.concatenate([p[0] for p in parts]))
    np.save(data / "labels.npy", np.concatenate([p[1] for p in parts]))
    np.save(data / "split.npy", np.repeat(np.arange(3, dtype=np.int8), [150, 30, 60]))
    write_json(data / "manifest.json", {"class_names": ["horizontal", "vertical", "checker"]})
    build_backbone(tiny_backbone(), root / "backbone")
    score_dataset(data, root / "backbone", ScoreConfig(batches=4, batch_size=16), root / "scores")
    for name, cfg in MASKS.items():
        build_mask(root / "scores", cfg, root / "masks" / f"{name}.safetensors")
    return root


def _setup(world, kind: str, options: dict):
    model, info = load_backbone(world / "backbone", 3)
    mask = options.get("mask")
    inputs = {"mask": world / "masks" / f"{mask}.safetensors"} if mask else {}
    return model, create_method({"kind": kind, **options}), RunContext("d", 0, info, inputs)


def _test_images():
    return stripes(60, 2)


def test_every_registered_method_is_covered():
    assert set(CASES) == set(methods())


@pytest.mark.parametrize("kind", list(CASES))
def test_method_trains_only_its_part_and_reloads(world, kind, tmp_path):
    options, expected = CASES[kind]
    model, method, ctx = _setup(world, kind, options)
    assert method.formula(copy.deepcopy(model), ctx) == expected
    torch.manual_seed(0)
    method.apply(model, ctx)
    counts = method.count(model)
    assert counts == {"trainable_backbone": expected, "trainable_head": 32 * 3 + 3}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    fit(model, stripes(150, 0), stripes(30, 1), TRAIN, 0, torch.device("cpu"))
    images, labels = _test_images()
    probs = predict(model, Preprocess(model, TRAIN.augment), images, 64, torch.device("cpu"))
    assert (probs.argmax(1) == labels).mean() > 0.5  # chance is 1/3

    after = dict(model.named_parameters())
    unchanged = [n for n, v in frozen.items() if torch.equal(after[n], v)]
    assert unchanged == list(frozen)  # every parameter it should not train, bitwise
    changed = [n for n, v in trained.items() if not torch.equal(after[n], v)]
    backbone_changed = [n for n in changed if not n.startswith("head.")]
    assert backbone_changed or expected == 0

    path = tmp_path / method.trained_file
    method.save(model, path, ctx.backbone.sha256)
    fresh, again, _ = _setup(world, kind, options)
    again.load(fresh, path, ctx)
    reloaded = predict(fresh, Preprocess(fresh, TRAIN.augment), images, 64, torch.device("cpu"))
    np.testing.assert_allclose(reloaded, probs, atol=1e-6)


def test_lora_goes_through_peft(world):
    from peft.tuners.lora import LoraLayer

    model, method, ctx = _setup(world, "lora", {"rank": 2})
    method.apply(model, ctx)
    assert isinstance(model.blocks[0].attn.qkv, LoraLayer)
    assert not isinstance(model.patch_embed.proj, LoraLayer)


@pytest.mark.parametrize(
    ("kind", "option", "target", "size"),
    [("lora", "rank", 3000, 3), ("adapter", "width", 1000, 7), ("vpt-deep", "length", 100, 2)],
)
def test_target_params_picks_the_closest_size(world, kind, option, target, size):
    model, method, ctx = _setup(world, kind, {"target_params": target})
    closest = method.count_for(copy.deepcopy(model), size)
    assert abs(closest - target) < abs(method.count_for(model, size + 1) - target)
    assert abs(closest - target) <= abs(method.count_for(model, size - 1) - target)
    method.apply(model, ctx)
    assert getattr(method.cfg, option) == size
    assert method.count(model)["trainable_backbone"] == closest


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("lora", {"rank": 33}, "rank 33 does not fit the backbone (between 1 and 32)"),
        ("adapter", {"width": 40}, "width 40 does not fit the backbone"),
        ("vpt-shallow", {"length": 0}, "length: Input should be greater than or equal to 1"),
        ("vpt-shallow", {"length": 17}, "length 17 does not fit the backbone (between 1 and 16)"),
        ("lora", {"targets": ["blocks.*.attn.nope"]}, "lora.targets: no module of the backbone"),
        ("adapter", {"targets": ["nothing"]}, "adapter.targets: no module of the backbone"),
        ("ssf", {"targets": ["blocks.*.attn"]}, "'blocks.0.attn' (Attention) is not a Linear"),
        ("lora", {"targets": ["blocks.*.norm1"]}, "are not Linear modules"),
    ],
)
def test_options_that_do_not_fit_the_backbone_are_refused(world, kind, options, message):
    with pytest.raises(ShpeftError, match=re.escape(message)):
        model, method, ctx = _setup(world, kind, options)
        method.apply(model, ctx)


def test_vpt_prompts_are_removed_before_pooling(world):
    model, method, ctx = _setup(world, "vpt-deep", {"length": 3})
    method.apply(model, ctx)
    tokens = model.forward_features(torch.zeros(2, 3, 16, 16))
    assert tokens.shape == (2, 17, 32)  # class token + 16 patches, no prompt left


def _fake_run(world, run_dir, kind: str, options: dict):
    """A run folder holding what `kind` trained (random values), as `finetune` would leave it."""
    model, method, ctx = _setup(world, kind, options)
    method.apply(model, ctx)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.1)
    run_dir.mkdir()
    write_json(run_dir / "config.json", {"dataset": "d", "seed": 0, "data": {"class_names": "abc"}})
    method.save(model, run_dir / method.trained_file, ctx.backbone.sha256)
    return model.eval()


#: The methods whose trained parts fold into the backbone's own weights, as the README lists them.
FOLDS = {"full", "linear", "bitfit", "ln-tune", "lora", "sh-peft", "spt", "gps", "sparse-random"}


@pytest.mark.parametrize("kind", list(CASES))
def test_merge_folds_what_it_can_and_refuses_the_rest(world, tmp_path, kind):
    from shpeft.export import load_merged, merge_run

    options = CASES[kind][0]
    tuned = _fake_run(world, tmp_path / kind, kind, options)
    method_config = {"kind": kind, **options}
    if kind not in FOLDS:
        with pytest.raises(ShpeftError, match=f"'{kind}' adds modules that cannot be folded"):
            merge_run(tmp_path / kind, world / "backbone", method_config, tmp_path / "m.st")
        return
    out = merge_run(tmp_path / kind, world / "backbone", method_config, tmp_path / "m.st")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_merged(out)(x), tuned(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", list(CASES))
def test_locations_account_for_every_trainable_weight(world, kind):
    options, expected = CASES[kind]
    model, method, ctx = _setup(world, kind, options)
    found = locations(method.apply(model, ctx))
    assert sum(found.values()) == expected
    layers = {k for (_, k), n in found.items() if n}
    if kind in ("lora", "sh-peft", "spt", "gps", "sparse-random"):
        assert layers <= {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"} and layers
    if kind == "vpt-deep":  # one prompt row per block
        assert found == {(0, "other"): 3 * 32, (1, "other"): 3 * 32}
    if kind == "ln-tune":  # norm1 and norm2 of each block, and the final norm outside them
        assert found == {(0, "other"): 128, (1, "other"): 128, (OUTSIDE, "other"): 64}
