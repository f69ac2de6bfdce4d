"""Importance criteria against direct computations on a small model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import MEDMNIST, needs_medmnist
from helpers import dataset, tiny_backbone
from shpeft.data.prepared import prepare_dataset as prepare
from shpeft.errors import ShpeftError
from shpeft.selection.importance import (
    SCORES_FILE,
    TASK_SPECIFIC,
    ScoreConfig,
    agnostic_scores,
    cross_entropy,
    eligible_parameters,
    gradient_scores,
    layer_summary,
    supcon_loss,
    top_entries,
    top_per_row,
)
from shpeft.steps.backbone import build
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


def _autograd_per_batch(model, params, batches, loss_fn):
    """Each batch's gradient of the eligible weights, by plain backward calls (no shpeft code)."""
    grads = []
    for batch in batches:
        model.zero_grad()
        for p in params.values():
            p.requires_grad_(True)
        loss_fn(model, batch).backward()
        grads.append(torch.cat([p.grad.flatten() for p in params.values()]))
    return torch.stack(grads)


def _check_against_autograd(model, params, batches, loss_fn):
    scores = gradient_scores(model, params, batches, loss_fn)
    assert all(not p.requires_grad for p in model.parameters())
    weights = torch.cat([p.detach().flatten() for p in params.values()])
    g = _autograd_per_batch(model, params, batches, loss_fn)
    # The pure gradient signals: no weight factor anywhere.
    torch.testing.assert_close(scores["grad_sum"], g.sum(0).abs())
    torch.testing.assert_close(scores["grad_l1"], g.abs().sum(0))
    torch.testing.assert_close(scores["grad_l2"], g.square().sum(0))
    # The Taylor estimates carry |w|.
    torch.testing.assert_close(scores["taylor_l1"], (g * weights).abs().sum(0))
    torch.testing.assert_close(scores["taylor_l2"], (g * weights).square().sum(0))


def test_gradient_scores_equal_autograd_statistics_under_cross_entropy():
    torch.manual_seed(0)
    model = Tiny()
    params = eligible_parameters(model, ["blocks.*.fc*.weight"])
    batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
    _check_against_autograd(model, params, batches, cross_entropy)


def test_gradient_scores_equal_autograd_statistics_under_supcon():
    """The supervised-contrastive loss of two views, against the formula written out here."""

    def supcon_by_hand(model, batch):
        x, y = batch
        z = torch.nn.functional.normalize(torch.cat([model(x), model(x.flip(1))]), dim=1)
        labels = torch.cat([y, y])
        total, anchors = 0.0, 0
        for i in range(len(z)):
            others = [j for j in range(len(z)) if j != i]
            positives = [j for j in others if labels[j] == labels[i]]
            if not positives:
                continue
            denominator = torch.logsumexp(torch.stack([z[i] @ z[j] / 0.07 for j in others]), 0)
            total = total - sum(z[i] @ z[j] / 0.07 - denominator for j in positives) / len(
                positives
            )
            anchors += 1
        return total / anchors

    def supcon(model, batch):
        x, y = batch
        return supcon_loss(torch.stack([model(x), model(x.flip(1))]), y, 0.07)

    torch.manual_seed(1)
    model = Tiny()
    params = eligible_parameters(model, ["blocks.*.fc*.weight"])
    batches = [(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 0])) for _ in range(2)]
    torch.testing.assert_close(supcon(model, batches[0]), supcon_by_hand(model, batches[0]))
    _check_against_autograd(model, params, batches, supcon)


def test_accumulated_gradient_is_gps_answer_where_summed_magnitudes_differ():
    """GPS's code accumulates `.grad` over the scoring pass and ranks its magnitude, |sum g|.
    Input 0's gradient flips sign between the two batches, input 1's does not: sum |g| ranks
    input 0 first, the accumulated gradient input 1, and per neuron ours picks what GPS picks."""
    model = nn.Linear(2, 1, bias=False)
    params = eligible_parameters(model, ["weight"])
    batches = [torch.tensor([[1.0, 0.5]]), torch.tensor([[-1.0, 0.5]])]

    def loss(model, x):
        return model(x).sum()

    def gps_reference():  # GPS's calculate_gradient: backward per batch, no zeroing between
        reference = nn.Linear(2, 1, bias=False)
        reference.load_state_dict(model.state_dict())
        for x in batches:
            loss(reference, x).backward()
        return reference.weight.grad.abs().flatten()

    scores = gradient_scores(model, params, batches, loss)
    assert top_per_row(scores["grad_sum"], params, 1).tolist() == [[1]]
    assert top_per_row(scores["grad_l1"], params, 1).tolist() == [[0]]
    official = gps_reference()
    assert int(official.argmax()) == 1
    torch.testing.assert_close(scores["grad_sum"], official)


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
        float(model.blocks[0]["fc1"].weight.detach().abs().max())
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
    eligible = list(summary["eligible"])
    matrices = [
        f"blocks.{b}.{t}.weight"
        for b in range(2)
        for t in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    ]
    assert set(matrices) < set(eligible) and "patch_embed.proj.weight" in eligible
    assert {"blocks.0.attn.qkv.bias", "blocks.1.norm2.weight", "norm.bias"} < set(eligible)
    assert not any(name.startswith(("head", "pos_embed", "cls_token")) for name in eligible)
    with safe_open(str(tmp_path / "out" / SCORES_FILE), framework="pt") as handle:
        keys = set(handle.keys())
        assert handle.get_tensor("cross_entropy/grad_l2.indices").shape == (500,)
        assert handle.get_tensor("supcon/grad_sum.per_row").shape[1] == cfg.per_row
        scores = handle.get_tensor("cross_entropy/taylor_l1.scores")
        supcon = handle.get_tensor("supcon/grad_sum.scores")
        cross = handle.get_tensor("cross_entropy/grad_sum.scores")
    criteria = [f"{loss}/{c}" for loss in cfg.losses for c in TASK_SPECIFIC]
    assert keys == {
        f"{c}.{p}"
        for c in (*criteria, "magnitude_l1", "magnitude_l2")
        for p in ("indices", "scores", "per_row")
    }
    assert not torch.equal(supcon, cross)  # two losses, two gradients
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
    layers = summary["layers"]
    assert len(layers) == len(summary["eligible"]) > 8
    assert all(v["cross_entropy/grad_sum"]["sum"] > 0 for v in layers.values())
    assert all(v["supcon/grad_l2"]["sum"] > 0 for v in layers.values())


def test_top_per_row_picks_each_neurons_best_inputs():
    params = {"a": torch.zeros(2, 3), "b": torch.zeros(1, 4)}
    scores = torch.tensor([1.0, 5.0, 3.0, 9.0, 2.0, 4.0, 0.0, 7.0, 6.0, 8.0])
    # a: rows [1,5,3] and [9,2,4]; b (offset 6): row [0,7,6,8]; k is capped at 3 columns.
    assert top_per_row(scores, params, 2).tolist() == [[1, 2], [3, 5], [9, 7]]
    assert top_per_row(scores, params, 9).shape == (3, 3)
