"""Mask construction: exact budgets, both hybrid rules, per-layer shares, bad settings refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import dataset, tiny_backbone
from shpeft.backbone.model import load_backbone
from shpeft.data.prepared import prepare_dataset as prepare
from shpeft.errors import ShpeftError
from shpeft.selection.importance import ScoreConfig
from shpeft.selection.masks import (
    MaskConfig,
    budget_entries,
    load_mask,
    overlap,
    random_selection,
    restrict,
    select,
)
from shpeft.steps.backbone import build as build_backbone
from shpeft.steps.mask import build as build_mask
from shpeft.steps.score import score_dataset

TOTAL = 1000
SIZES = [600, 400]


def _orders(seed=0):
    rng = np.random.default_rng(seed)
    return rng.permutation(TOTAL)[:300], rng.permutation(TOTAL)[:300]


@pytest.mark.parametrize("rule", ["split", "fusion"])
@pytest.mark.parametrize("scope", ["global", "per_layer"])
@pytest.mark.parametrize("rho", [0.0, 0.3, 1.0])
def test_budget_is_met_exactly(rule, scope, rho):
    specific, agnostic = _orders()
    chosen = select(MaskConfig(rule=rule, scope=scope, rho=rho), specific, agnostic, SIZES, 50)
    assert len(chosen.indices) == 50 == len(np.unique(chosen.indices))
    if rho in (0.0, 1.0):
        assert chosen.rho == rho


def test_split_rule_takes_the_shares_in_order():
    specific, agnostic = _orders()
    picked = select(MaskConfig(rule="split", rho=0.3), specific, agnostic, SIZES, 50)
    assert picked.from_specific == 15 and picked.rho == 0.3
    chosen = set(picked.indices.tolist())
    assert set(specific[:15].tolist()) <= chosen
    rest = [i for i in agnostic.tolist() if i not in set(specific[:15].tolist())][:35]
    assert chosen == set(specific[:15].tolist()) | set(rest)
    pure = select(MaskConfig(rho=1.0), specific, agnostic, SIZES, 50)
    assert set(pure.indices.tolist()) == set(specific[:50].tolist())


def test_fusion_extremes_reduce_to_one_side():
    specific, agnostic = _orders()
    for rho, side in ((1.0, specific), (0.0, agnostic)):
        chosen = select(MaskConfig(rule="fusion", rho=rho), specific, agnostic, SIZES, 40)
        assert set(chosen.indices.tolist()) == set(side[:40].tolist())


def test_per_layer_shares_follow_tensor_sizes():
    specific, agnostic = _orders()
    chosen = select(MaskConfig(scope="per_layer"), specific, agnostic, SIZES, 50).indices
    assert np.sum(chosen < 600) == 30 and np.sum(chosen >= 600) == 20


def test_the_rho_a_mask_reaches_is_reported_when_rounding_moves_it():
    """k = 5 at rho 0.5: globally round(2.5) = 2 task-specific entries (0.4); per layer the
    shares 3 and 2 take round(1.5) + round(1.0) = 3 (0.6)."""
    specific, agnostic = _orders()
    assert select(MaskConfig(rho=0.5), specific, agnostic, SIZES, 5).rho == 0.4
    assert select(MaskConfig(rho=0.5, scope="per_layer"), specific, agnostic, SIZES, 5).rho == 0.6


def test_restrict_maps_indices_onto_the_candidate_tensors():
    eligible = {"a": 4, "b": 3, "c": 5}
    kept = {"a": 4, "c": 5}
    flat = np.array([8, 0, 5, 11, 3])  # c[1], a[0], b[1] (dropped), c[4], a[3]
    assert restrict(flat, eligible, kept).tolist() == [5, 0, -1, 8, 3]
    rows = np.array([[8, 9], [4, 6]])
    assert restrict(rows, eligible, kept).tolist() == [[5, 6], [-1, -1]]


def test_random_selection_is_deterministic_for_a_seed():
    assert np.array_equal(random_selection(TOTAL, 20, 3), random_selection(TOTAL, 20, 3))
    assert not np.array_equal(random_selection(TOTAL, 20, 3), random_selection(TOTAL, 20, 4))


def test_overlap_of_identical_and_of_random_sets():
    order = np.arange(100)
    assert overlap(order, order, 10, 100)["jaccard"] == 1.0
    chance = overlap(order, order[::-1], 10, 100)
    assert chance["jaccard"] == 0.0 and chance["jaccard_chance"] == pytest.approx(1 / 19)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (MaskConfig(budget=1e-9), "gives no entry"),
        (MaskConfig(budget_count=5000), "only 1000 are eligible"),
    ],
)
def test_bad_settings_are_refused(cfg, message):
    with pytest.raises(ShpeftError, match=message):
        budget_entries(cfg, backbone_params=10_000, eligible=TOTAL)


def test_too_small_top_m_is_reported():
    specific, agnostic = _orders()
    with pytest.raises(ShpeftError, match="top_m is too small"):
        select(MaskConfig(rho=1.0), specific[:10], agnostic[:10], SIZES, 50)


def test_mask_step_from_real_scores(tmp_path):
    from safetensors.torch import load_file

    meta = build_backbone(tiny_backbone(), tmp_path / "backbone")
    prepare(
        "d",
        dataset(
            {
                "source": "synthetic",
                "kind": "ultrasound",
                "image_size": 16,
                "n_train": 30,
                "n_val": 9,
                "n_test": 9,
            }
        ),
        tmp_path / "data",
    )
    score_dataset(
        tmp_path / "data",
        tmp_path / "backbone",
        ScoreConfig(batches=2, batch_size=8, probe_epochs=1),
        tmp_path / "imp",
    )
    cfg = MaskConfig(budget_count=25, rule="fusion", rho=0.5)
    stats = build_mask(tmp_path / "imp", cfg, tmp_path / "m" / "hybrid.safetensors")
    positions = load_file(tmp_path / "m" / "hybrid.safetensors")
    assert sum(len(p) for p in positions.values()) == 25 == stats["k"]
    assert sum(stats["per_block"].values()) == 25
    assert stats["backbone_sha256"] == meta["sha256"]
    assert 0 <= stats["overlap_at_budget"]["jaccard"] <= 1
    assert stats["built"]["from_task_specific"] + stats["built"]["from_task_agnostic"] == 25
    assert set(stats["per_tensor"]) <= {n for n in positions if n.startswith("blocks.")}
    assert all(".weight" in name and name.startswith("blocks.") for name in positions)
    again = build_mask(tmp_path / "imp", cfg, tmp_path / "m2" / "hybrid.safetensors")
    assert again["per_tensor"] == stats["per_tensor"]  # deterministic
    with pytest.raises(ShpeftError, match="only .* are eligible"):
        build_mask(
            tmp_path / "imp", MaskConfig(budget_count=10**7), tmp_path / "m3" / "x.safetensors"
        )
    assert not (tmp_path / "m3" / "x.safetensors").exists()
    # The positions are the model's own: the task-agnostic side alone is the top |w|.
    magnitude = build_mask(
        tmp_path / "imp", MaskConfig(rho=0.0, budget_count=30), tmp_path / "a.st"
    )
    model, _ = load_backbone(tmp_path / "backbone", 2)
    weights = {n: p.detach().flatten().abs() for n, p in model.named_parameters()}
    chosen = load_file(tmp_path / "a.st")
    picked = torch.cat([weights[n][p] for n, p in chosen.items()])
    eligible = load_mask(tmp_path / "a.st", magnitude["backbone_sha256"]).eligible
    assert list(eligible) == [
        n for n in weights if n.startswith("blocks.") and n.endswith("weight") and "norm" not in n
    ]  # the block matrices, in the model's order
    candidates = torch.cat([weights[n] for n in eligible])
    torch.testing.assert_close(picked.sort().values, candidates.topk(30).values.sort().values)
    # A variant's candidates restrict it to those tensors; GPS's rule counts their rows.
    gps = MaskConfig(rule="per_neuron", per_neuron=2, candidates=["patch_embed.proj.weight"])
    stats = build_mask(tmp_path / "imp", gps, tmp_path / "m4" / "gps.safetensors")
    assert stats["per_tensor"] == {"patch_embed.proj.weight": 32 * 2}
    assert stats["eligible"] == 32 * 3 * 4 * 4
    with pytest.raises(ShpeftError, match=r"candidates \['nope\.\*'\] match no scored tensor"):
        build_mask(tmp_path / "imp", MaskConfig(candidates=["nope.*"]), tmp_path / "m5.st")
