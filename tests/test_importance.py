"""Importance criteria against direct computations on a small model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import MEDMNIST, needs_medmnist
from helpers import dataset, tiny_backbone
from shpeft.errors import ShpeftError
from shpeft.selection.importance import (
    SCORES_FILE,
    ScoreConfig,
    agnostic_scores,
    eligible_parameters,
    gradient_scores,
    layer_summary,
    top_entries,
    top_per_row,
)
from shpeft.steps.backbone import build
from shpeft.steps.prepare import prepare
from shpeft.steps.score import score_dataset


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(
            [nn.ModuleDict({"fc1": nn.Linear(4, 6), "fc2": nn.Linear(6, 3)})]
        )

    def forward(self, x):
        block = self.blocks[0]
        return block["fc2"](torch.tanh(block["fc1"](x)))


def test_gradient_scores_equal_a_direct_computation():
    torch.manual_seed(0)
    model = Tiny()
    params = eligible_parameters(model, ["blocks.*.fc*.weight"])
    batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
    scores = gradient_scores(model, params, batches, nn.CrossEntropyLoss())
    assert all(not p.requires_grad for p in model.parameters())
    weights = torch.cat([p.detach().flatten() for p in params.values()])
    grads = []
    for x, y in batches:
        model.zero_grad()
        for p in params.values():
            p.requires_grad_(True)
        nn.functional.cross_entropy(model(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in params.values()]))
    g = torch.stack(grads)
    torch.testing.assert_close(scores["grad_l2"], g.square().sum(0))
    torch.testing.assert_close(scores["grad_l1"], g.abs().sum(0))
    torch.testing.assert_close(scores["taylor_l1"], (g * weights).abs().sum(0))
    torch.testing.assert_close(scores["taylor_l2"], (g * weights).square().sum(0))


def test_agnostic_scores_top_entries_and_summary():
    model = Tiny()
    params = eligible_parameters(model, ["blocks.*.fc1.weight", "blocks.*.fc2.weight"])
    scores = agnostic_scores(params)
    assert scores["magnitude_l1"].numel() == 4 * 6 + 6 * 3
    indices, values = top_entries(scores["magnitude_l2"], 5)
    assert len(indices) == 5 and list(values) == sorted(values, reverse=True)
    flat = torch.cat([p.detach().flatten() for p in params.values()])
    torch.testing.assert_close(torch.from_numpy(values), flat[indices].square())
    summary = layer_summary(params, scores)
    assert set(summary) == {"blocks.0.fc1.weight", "blocks.0.fc2.weight"}
    assert summary["blocks.0.fc1.weight"]["magnitude_l1"]["max"] == pytest.approx(
        float(model.blocks[0]["fc1"].weight.abs().max())
    )


def test_a_pattern_matching_nothing_is_refused():
    with pytest.raises(ShpeftError, match="no backbone tensor matches"):
        eligible_parameters(Tiny(), ["blocks.*.attn.qkv.weight"])


def _backbone(tmp_path):
    build(tiny_backbone(), tmp_path / "backbone")
    return tmp_path / "backbone"


def test_score_step_keeps_top_m_per_criterion(tmp_path):
    from safetensors import safe_open

    prepare(
        "d",
        dataset(
            {
                "source": "synthetic",
                "kind": "xray",
                "image_size": 16,
                "n_train": 40,
                "n_val": 12,
                "n_test": 12,
            }
        ),
        tmp_path / "data",
    )
    cfg = ScoreConfig(batches=2, batch_size=8, probe_epochs=1, top_m=500)
    summary = score_dataset(tmp_path / "data", _backbone(tmp_path), cfg, tmp_path / "out")
    assert list(summary["eligible"]) == [
        f"blocks.{b}.{t}.weight"
        for b in range(2)
        for t in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    ]
    with safe_open(str(tmp_path / "out" / SCORES_FILE), framework="pt") as handle:
        keys = set(handle.keys())
        assert handle.get_tensor("grad_l2.indices").shape == (500,)
        rows = 2 * (3 * 32 + 32 + 4 * 32 + 32)  # qkv, proj, fc1, fc2 rows of each block
        assert handle.get_tensor("grad_l1.per_row").shape == (rows, cfg.per_row)
        scores = handle.get_tensor("taylor_l1.scores")
    assert keys == {
        f"{c}.{p}"
        for c in ("taylor_l1", "taylor_l2", "grad_l1", "grad_l2", "magnitude_l1", "magnitude_l2")
        for p in ("indices", "scores", "per_row")
    }
    assert torch.all(scores[:-1] >= scores[1:])
    again = score_dataset(tmp_path / "data", tmp_path / "backbone", cfg, tmp_path / "again")
    assert again["layers"] == summary["layers"]  # deterministic for a seed


@needs_medmnist
def test_scoring_real_breastmnist_on_cpu(tmp_path):
    prepare(
        "breast",
        dataset(
            {"source": "medmnist", "name": "breastmnist", "root": str(MEDMNIST), "image_size": 16}
        ),
        tmp_path / "data",
    )
    summary = score_dataset(tmp_path / "data", _backbone(tmp_path), ScoreConfig(), tmp_path / "o")
    assert len(summary["layers"]) == 8
    assert all(v["taylor_l1"]["sum"] > 0 for v in summary["layers"].values())


def test_top_per_row_picks_each_neurons_best_inputs():
    params = {"a": torch.zeros(2, 3), "b": torch.zeros(1, 4)}
    scores = torch.tensor([1.0, 5.0, 3.0, 9.0, 2.0, 4.0, 0.0, 7.0, 6.0, 8.0])
    # a: rows [1,5,3] and [9,2,4]; b (offset 6): row [0,7,6,8]; k is capped at 3 columns.
    assert top_per_row(scores, params, 2).tolist() == [[1, 2], [3, 5], [9, 7]]
    assert top_per_row(scores, params, 9).shape == (3, 3)
