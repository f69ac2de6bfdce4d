"""Importance criteria against direct computations on a small model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shpeft.errors import ShpeftError
from shpeft.importance import (
    agnostic_scores,
    eligible_parameters,
    gradient_scores,
    layer_summary,
    top_entries,
)


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
