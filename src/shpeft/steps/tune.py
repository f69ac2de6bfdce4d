"""The `tune` step: one method's candidate recipes on one dataset (`shpeft.train.tuning`), each
trained on the training split and scored on the validation split; the test split is not loaded.
Writes the choice and every candidate's scores to `tuning/<dataset>/<method>.json`, which the
method's runs on that dataset train with. The file holds no timing, so a rerun on the same machine
writes the same bytes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shpeft.config import merged
from shpeft.dag import Job
from shpeft.data.prepared import PreparedDataset
from shpeft.fileio import write_json
from shpeft.methods.registry import FinetuneOverride, MethodConfig, training_config, tune_grid
from shpeft.steps.finetune import method_model
from shpeft.train.config import FinetuneConfig
from shpeft.train.loop import fit
from shpeft.train.tuning import TuneConfig, candidates, choose, recipe_of, score

log = logging.getLogger(__name__)


def run(
    job: Job,
    inputs: dict[str, Path],
    method_config: MethodConfig,
    finetune: FinetuneConfig,
    tune: TuneConfig,
    seeds: list[int],
) -> dict[str, Any]:
    dataset, method = job["dataset"], job["method"]
    base = training_config(finetune, method_config)
    grid = tune_grid(tune.grid, method_config)
    epochs = tune.epochs or base.epochs
    data = PreparedDataset.load(inputs["data"])
    tune_seeds = tune.seeds_of(seeds)
    per_seed = seed_inputs(inputs, tune_seeds)
    tried = []
    for recipe in candidates(base, grid):
        cfg = merged(base, FinetuneOverride(**recipe, epochs=epochs))
        runs = [
            train_candidate(method_config, cfg, found, data, dataset, seed)
            for seed, found in per_seed.items()
        ]
        tried.append({"recipe": recipe, "runs": runs, "val": score([r["val"] for r in runs])})
        log.info("%s on %s: %s -> validation %s", method, dataset, recipe, tried[-1]["val"])
    best = choose(tried, base)
    tuning = {
        "dataset": dataset,
        "method": method,
        "select": base.select,
        "epochs": epochs,
        "seeds": tune_seeds,
        "grid": grid.model_dump(),
        "own_recipe": recipe_of(base),
        "candidates": tried,
        "chosen": {"index": best, "recipe": tried[best]["recipe"], "val": tried[best]["val"]},
    }
    write_json(job.outputs["tuning"], tuning)
    log.info("%s on %s: chose %s", method, dataset, tried[best]["recipe"])
    return tuning["chosen"]


def seed_inputs(inputs: dict[str, Any], seeds: list[int]) -> dict[int, dict[str, Path]]:
    """Each tune seed's inputs: the data, the backbone and that seed's mask (`masks`, in the
    order of the seeds, for a sparse method)."""
    shared = {k: v for k, v in inputs.items() if k != "masks"}
    masks = inputs.get("masks") or [None] * len(seeds)
    return {s: {**shared, **({"mask": m} if m else {})} for s, m in zip(seeds, masks, strict=True)}


def train_candidate(
    method_config: MethodConfig,
    cfg: FinetuneConfig,
    inputs: dict[str, Path],
    data: PreparedDataset,
    dataset: str,
    seed: int,
) -> dict[str, Any]:
    """One candidate with one seed: its best epoch and that epoch's validation scores."""
    _, model, _, device = method_model(method_config, cfg, inputs, data, dataset, seed)
    result = fit(model, data.part("train"), data.part("val"), cfg, seed, device)
    return {"seed": seed, "best_epoch": result.best_epoch, "val": result.best_val}
