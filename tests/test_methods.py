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
from shpeft.selection.importance import BLOCK_WEIGHTS, ScoreConfig
from shpeft.selection.masks import MaskConfig, load_mask
from shpeft.steps.backbone import build as build_backbone
from shpeft.steps.mask import build as build_mask
from shpeft.steps.score import score_dataset
from shpeft.train.config import AugmentConfig, FinetuneConfig
from shpeft.train.loop import fit, predict
from shpeft.train.preprocess import Preprocess

ROWS = 2 * (96 + 32 + 128 + 32) + 32  # output neurons of the block matrices and patch embedding
BIASES = 2 * (96 + 32 + 128 + 32) + 32  # biases of the block Linears and the patch embedding
K = 60
K_SPT = 400

# Each method's options for the tiny ViT, and its trainable backbone count worked out by hand.
CASES = {
    "full": ({}, 27616),
    "linear": ({}, 0),
    "bitfit": ({}, 2 * (32 + 96 + 32 + 32 + 128 + 32) + 32 + 32),  # blocks, patch embed, norm
    "ln-tune": ({}, 5 * 2 * 32),  # norm1 and norm2 of 2 blocks, final norm
    "lora": ({"rank": 2}, 2 * 2 * 2 * (32 + 32)),  # query and value of 2 blocks
    "vpt-shallow": ({"length": 3}, 3 * 32),
    "vpt-deep": ({"length": 3}, 2 * 3 * 32),
    "adapter": ({"width": 4}, 2 * (2 * 32 * 4 + 4 + 32)),
    "ssf": ({}, 2 * (32 + 2 * (32 + 96 + 32 + 32 + 128 + 32) + 32)),
    "sh-peft": ({"mask": "hybrid"}, K),
    "spt": ({"mask": "spt"}, None),  # worked out from the mask: `spt_plan`
    "spt-unstructured": ({"mask": "spt"}, K_SPT),
    "gps": ({"mask": "gps"}, ROWS + BIASES),
    "sparse-random": ({"mask": "hybrid"}, K),
    "sparse-oracle": ({}, K),
}
#: The mask file a method reads without naming a variant: the oracle step's has the mask format,
#: and the hybrid one stands in for it.
IMPLIED_MASKS = {"sparse-oracle": "hybrid"}
MASKS = {
    "hybrid": MaskConfig(budget_count=K),
    "spt": MaskConfig(
        task_specific="grad_l2",
        rho=1.0,
        budget_count=K_SPT,
        candidates=[*BLOCK_WEIGHTS, "blocks.*.bias", "blocks.*.norm?.weight", "norm.*"],
    ),
    "gps": MaskConfig(
        task_specific="grad_sum",
        loss="supcon",
        rule="per_neuron",
        per_neuron=1,
        candidates=[*BLOCK_WEIGHTS, "patch_embed.proj.weight"],
    ),
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
    mask = options.get("mask", IMPLIED_MASKS.get(kind))
    inputs = {"mask": world / "masks" / f"{mask}.safetensors"} if mask else {}
    return model, create_method({"kind": kind, **options}), RunContext("d", 0, info, inputs)


def spt_plan(world, rank=8, alpha=10.0, share=0.2):
    """SPT's decisions worked out here from the mask file alone: query, key and value are the
    row thirds of qkv; a matrix with at least rank x (in + out) / alpha entries gets LoRA, a
    vector with at least `share` of its entries trains in full, the rest keep their entries."""
    model, info = load_backbone(world / "backbone", 3)
    params = dict(model.named_parameters())
    mask = load_mask(world / "masks" / "spt.safetensors", info.sha256)
    counts = {}
    for name, positions in mask.selection.items():
        shape = params[name].shape
        if name.endswith("qkv.weight") or name.endswith("qkv.bias"):
            rows = positions // shape[1] if len(shape) == 2 else positions
            for third, part in enumerate("qkv"):
                inside = int(np.sum(rows // (shape[0] // 3) == third))
                part_shape = (shape[0] // 3, *shape[1:])
                counts[name.replace("qkv.", f"qkv.{part}.")] = (inside, part_shape)
        else:
            counts[name] = (len(positions), tuple(shape))
    structured, full, sparse = set(), set(), 0
    for name, (count, shape) in counts.items():
        if len(shape) == 2 and count >= rank * (shape[0] + shape[1]) / alpha:
            structured.add(name.removesuffix(".weight"))
        elif len(shape) == 1 and count >= share * shape[0]:
            full.add(name)
        else:
            sparse += count
    lora = sum(rank * sum(counts[f"{m}.weight"][1]) for m in structured)
    total = lora + sum(counts[n][1][0] for n in full) + sparse
    return structured, full, total


def _case(world, kind):
    options, expected = CASES[kind]
    return options, spt_plan(world)[2] if expected is None else expected


def _test_images():
    return stripes(60, 2)


def test_every_registered_method_is_covered():
    assert set(CASES) == set(methods())


@pytest.mark.parametrize("kind", list(CASES))
def test_method_trains_only_its_part_and_reloads(world, kind, tmp_path):
    options, expected = _case(world, kind)
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


def test_lora_adapts_query_and_value_of_the_fused_qkv_through_peft(world):
    from peft.tuners.lora import LoraLayer

    model, method, ctx = _setup(world, "lora", {"rank": 2})
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
    method.apply(model, ctx)
    qkv = model.blocks[0].attn.qkv
    assert [isinstance(qkv.get_submodule(p), LoraLayer) for p in "qkv"] == [True, False, True]
    assert not isinstance(model.patch_embed.proj, LoraLayer)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-6)  # B starts at zero
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.1)
        tuned = model(x)
    method.fold(model)
    assert type(model.blocks[0].attn.qkv) is torch.nn.Linear  # fused again
    with torch.no_grad():
        torch.testing.assert_close(model(x), tuned, rtol=0, atol=1e-5)


def test_spt_structured_part_is_exactly_the_matrices_over_the_threshold(world, tmp_path):
    from peft.tuners.lora import LoraLayer

    from shpeft.sparse.inject import sparse_layers

    structured, full, total = spt_plan(world)
    assert structured and full  # the case holds both kinds, and sparse entries elsewhere
    model, method, ctx = _setup(world, "spt", {"mask": "spt"})
    method.apply(model, ctx)
    lora = {name for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    assert lora == structured
    deltas = sparse_layers(model)
    assert not {name.removesuffix(".weight") for name in deltas} & structured
    assert not set(deltas) & full
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(any(t.startswith(f"{n.rsplit('.', 1)[0]}.") for t in trainable) for n in full)
    assert method.count(model)["trainable_backbone"] == total
    # Below the threshold SPT trains exactly its sensitive entries: the mask's, per q/k/v part.
    mask = load_mask(world / "masks" / "spt.safetensors", ctx.backbone.sha256).selection
    fc2 = "blocks.1.mlp.fc2.weight"
    if fc2 in deltas:
        assert sorted(deltas[fc2].positions.tolist()) == sorted(mask[fc2].tolist())


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ({"blocks.0.attn.qkv.weight": np.array([3 * 32 * 32])}, "lies outside its 3072 entries"),
        ({"blocks.0.attn.qkv.bias": np.array([5, 5])}, "'blocks.0.attn.qkv.bias' lists a"),
        ({"blocks.9.mlp.fc1.weight": np.array([0])}, "is not a tensor of this backbone"),
    ],
)
def test_spt_refuses_a_bad_selection_before_splitting_qkv(world, selection, message):
    model, method, _ = _setup(world, "spt", {"mask": "spt"})
    with pytest.raises(ShpeftError, match=f"m.st: .*{re.escape(message)}"):
        method.plan(model, selection, "m.st")


def test_gps_trains_every_bias_but_the_norms(world):
    model, method, ctx = _setup(world, "gps", {"mask": "gps"})
    method.apply(model, ctx)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    biases = {n for n in trainable if n.endswith("bias") and not n.startswith("head")}
    assert len(biases) == 2 * 4 + 1  # qkv, proj, fc1, fc2 of both blocks, the patch embedding
    assert not any("norm" in n for n in trainable)
    assert any("patch_embed.proj.parametrizations.weight" in n for n in trainable)


@pytest.mark.parametrize(("where", "expected"), [("residual", "stream"), ("normed", "normed")])
def test_adaptformer_adapter_reads_the_residual_stream_before_norm2(world, where, expected):
    """A hook records what each adapter's down-projection sees: by default the block's stream x
    as it enters norm2 (AdaptFormer's code), with `input: normed` norm2's output."""
    model, method, ctx = _setup(world, "adapter", {"width": 4, "input": where})
    seen = {}
    block = model.blocks[1]
    block.norm2.register_forward_hook(
        lambda _, args, out: seen.update(stream=args[0].detach(), normed=out.detach())
    )
    method.apply(model, ctx)
    block.mlp.down.register_forward_hook(lambda _, args, out: seen.update(down=args[0].detach()))
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
    assert torch.equal(seen["down"], seen[expected])
    assert not torch.allclose(seen["stream"], seen["normed"])
    if where == "residual":
        assert block.norm2.stream is None  # nothing held between passes


@pytest.mark.parametrize(
    ("kind", "option", "target", "size"),
    [("lora", "rank", 3000, 12), ("adapter", "width", 1000, 7), ("vpt-deep", "length", 100, 2)],
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
        ("lora", {"targets": ["blocks.*.attn.qkv.q", "blocks.*.norm1"]}, "are not Linear modules"),
        ("lora", {"targets": ["blocks.*.attn.qkv*"]}, "matched together with its parts"),
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
FOLDS = {
    "full",
    "linear",
    "bitfit",
    "ln-tune",
    "lora",
    "sh-peft",
    "spt",
    "spt-unstructured",
    "gps",
    "sparse-random",
    "sparse-oracle",
}


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
    options, expected = _case(world, kind)
    model, method, ctx = _setup(world, kind, options)
    found = locations(method.apply(model, ctx))
    assert sum(found.values()) == expected
    layers = {k for (_, k), n in found.items() if n}
    if kind in ("lora", "sh-peft", "sparse-random"):
        assert layers <= {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"} and layers
    if kind == "vpt-deep":  # one prompt row per block
        assert found == {(0, "other"): 3 * 32, (1, "other"): 3 * 32}
    if kind == "ln-tune":  # norm1 and norm2 of each block, and the final norm outside them
        assert found == {(0, "other"): 128, (1, "other"): 128, (OUTSIDE, "other"): 64}
