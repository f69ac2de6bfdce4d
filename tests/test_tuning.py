"""Per-method recipes and the tune step: candidates, the validation-only choice, what a run
trains with and records."""

from __future__ import annotations

import json

import pytest

from conftest import LAYOUT, layered
from shpeft.errors import ShpeftError
from shpeft.methods.registry import methods, training_config, tune_grid
from shpeft.runs import RunFolder
from shpeft.steps import run_job
from shpeft.train.config import FinetuneConfig
from shpeft.train.loop import OPTIMIZERS, param_groups
from shpeft.train.tuning import TuneGrid, candidates, choose, read_tuning


def test_each_kind_with_a_paper_recipe_names_its_source_and_sets_keys_finetune_has():
    own = {kind: cls.recipe for kind, cls in methods().items() if cls.recipe.finetune}
    assert {"adapter", "vpt-shallow", "vpt-deep", "ssf", "spt", "gps"} <= set(own)
    for kind, recipe in own.items():
        assert recipe.source, kind
        assert set(recipe.finetune) <= set(FinetuneConfig.model_fields), kind
        assert set(recipe.grid) <= set(TuneGrid.model_fields), kind


def test_a_method_trains_with_its_kinds_recipe_under_its_own_keys(tiny_params):
    adapter = methods()["adapter"].config_model.model_validate(
        {"kind": "adapter", "finetune": {"lr": 0.2}}
    )
    cfg = training_config(tiny_params.finetune, adapter)
    # The kind's recipe (SGD, lr per 256 images, no weight decay) under the method's own lr,
    # over the shared section (batch 16 in the tiny params).
    assert (cfg.optimizer, cfg.lr_batch, cfg.weight_decay, cfg.lr) == ("sgd", 256, 0.0, 0.2)
    assert cfg.peak_lr == pytest.approx(0.2 * 16 / 256)
    assert cfg.epochs == tiny_params.finetune.epochs
    shared = training_config(tiny_params.finetune, tiny_params.methods["sh-peft"])
    assert shared == tiny_params.finetune


def test_the_optimizer_gets_the_scaled_learning_rate():
    import torch

    weight = torch.nn.Parameter(torch.ones(2, 2))
    cfg = FinetuneConfig(optimizer="sgd", lr=0.1, lr_batch=256, batch_size=64)
    optimizer = OPTIMIZERS[cfg.optimizer](param_groups([("w", weight)], 0.0), cfg)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


def test_grids_layer_shared_then_the_papers_search_then_the_methods_own(tiny_params):
    vpt = methods()["vpt-deep"].config_model.model_validate(
        {"kind": "vpt-deep", "tune": {"lr_scale": [1.0]}}
    )
    grid = tune_grid(TuneGrid(lr_scale=[0.5, 2.0]), vpt)
    assert grid.lr_scale == [1.0] and grid.weight_decay == [0.0, 0.0001, 0.001, 0.01]
    base = training_config(tiny_params.finetune, vpt)
    found = candidates(base, grid)
    assert [c["weight_decay"] for c in found] == [0.0, 0.0001, 0.001, 0.01]
    assert {(c["optimizer"], c["lr"]) for c in found} == {("sgd", base.lr)}


def _tried(*scores: tuple[float, float], base: FinetuneConfig) -> list[dict]:
    lrs = [base.lr * s for s in (0.3, 1.0, 3.0)]
    return [
        {
            "recipe": {"optimizer": base.optimizer, "lr": lr, "weight_decay": base.weight_decay},
            "val": {"accuracy": acc, "loss": loss},
        }
        for lr, (acc, loss) in zip(lrs, scores, strict=True)
    ]


def test_the_choice_is_the_best_validation_score_ties_to_the_own_recipe():
    base = FinetuneConfig(lr=0.01)
    assert choose(_tried((0.5, 1.0), (0.6, 1.0), (0.7, 1.0), base=base), base) == 2
    assert choose(_tried((0.7, 0.9), (0.7, 1.0), (0.6, 1.0), base=base), base) == 0  # lower loss
    assert choose(_tried((0.7, 1.0), (0.7, 1.0), (0.7, 1.0), base=base), base) == 1  # own recipe
    by_loss = base.model_copy(update={"select": "loss"})
    assert choose(_tried((0.9, 1.0), (0.1, 0.5), (0.9, 0.7), base=by_loss), by_loss) == 1


def test_tune_writes_every_candidate_and_the_run_trains_with_the_choice(in_tmp):
    params = layered(in_tmp, "backbone: {weights: none}\ntune: {enabled: true}\n")
    run_job(params, "prepare", dataset="tiny_us")
    run_job(params, "backbone")
    run_job(params, "tune", dataset="tiny_us", method="linear")
    tuning = json.loads(LAYOUT.tuning_file("tiny_us", "linear").read_text())
    lr = params.finetune.lr  # linear has no recipe of its own: the shared one
    assert [c["recipe"]["lr"] for c in tuning["candidates"]] == pytest.approx([lr / 2, lr * 2])
    assert tuning["grid"]["lr_scale"] == [0.5, 2.0] and tuning["seeds"] == [0]
    for candidate in tuning["candidates"]:
        assert candidate["val"]["accuracy"] == candidate["runs"][0]["val"]["accuracy"]
        assert "test" not in json.dumps(candidate)
    chosen = tuning["chosen"]
    assert chosen["recipe"] == tuning["candidates"][chosen["index"]]["recipe"]
    run_job(params, "finetune", dataset="tiny_us", method="linear", seed=0)
    config = RunFolder(LAYOUT.run_dir("tiny_us", "linear", 0)).config()
    assert config["finetune"]["lr"] == pytest.approx(chosen["recipe"]["lr"])
    assert config["recipe"]["tuned"] == str(LAYOUT.tuning_file("tiny_us", "linear"))
    assert config["recipe"]["grid"] == tuning["grid"] and config["recipe"]["chosen"] == chosen


def test_a_tuning_file_of_another_pair_or_broken_is_refused_by_name(tmp_path):
    path = tmp_path / "sh-peft.json"
    path.write_text(json.dumps({"dataset": "xray", "method": "lora", "chosen": {}}))
    with pytest.raises(ShpeftError, match=r"sh-peft.json: the tuned recipe of xray x lora"):
        read_tuning(path, "xray", "sh-peft")
    path.write_text("{not json")
    with pytest.raises(ShpeftError, match=r"sh-peft.json: not a readable tuning file"):
        read_tuning(path, "xray", "sh-peft")
