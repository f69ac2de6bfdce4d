"""Recipe tuning: each method's candidate recipes, ranked on the validation split only.

A candidate is the method's own recipe (`methods.registry.training_config`) with a few keys
changed: the learning rate scaled by each `lr_scale` and, where the grid lists them, each weight
decay and optimizer. Every candidate trains `tune.epochs` epochs with each `tune.seeds` seed on
the training split; its score is its best epoch's validation score (`finetune.select`, ties to
the lower loss, as epochs are chosen), averaged over the seeds. The best wins; ties go to the
candidate nearest the method's own recipe, so a grid that cannot tell its candidates apart leaves
the recipe as its paper states it. The test split takes no part.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from shpeft.config import Section, Unique
from shpeft.errors import ShpeftError
from shpeft.fileio import read_json
from shpeft.train.config import FinetuneConfig, OptimizerName
from shpeft.train.state import selection_key

#: The `finetune` keys a candidate may change (a recipe, as the tuning file records it).
RECIPE_KEYS = ("optimizer", "lr", "weight_decay")


class TuneGrid(Section):
    """Candidate recipes: every combination of these lists, each applied to the method's own."""

    lr_scale: Unique[list[Annotated[float, Field(gt=0)]]] = Field(
        default_factory=lambda: [0.3, 1.0, 3.0], min_length=1
    )
    """Factors of the method's own learning rate."""
    weight_decay: Unique[list[Annotated[float, Field(ge=0)]]] | None = Field(None, min_length=1)
    """Weight decays to try; unset: the method's own only."""
    optimizer: Unique[list[OptimizerName]] | None = Field(None, min_length=1)
    """Optimizers to try (each with the scaled learning rate); unset: the method's own only."""


class TuneConfig(Section):
    """The `tune` stage: one JSON file per dataset x method, which its finetune runs train with."""

    enabled: bool = False
    """Tune every method's recipe per dataset before its runs (off: each trains with its own)."""
    grid: TuneGrid = Field(default_factory=TuneGrid)
    """The candidates of every method; a method's kind (its paper's search) and
    `methods.<id>.tune` replace some of these lists."""
    epochs: int | None = Field(None, ge=1)
    """Epochs each candidate trains; unset: `finetune.epochs` (fewer shorten the schedule, which
    favours higher learning rates)."""
    seeds: Unique[list[Annotated[int, Field(ge=0)]]] | None = Field(None, min_length=1)
    """Seeds each candidate trains with; unset: the first of `seeds`."""

    def seeds_of(self, grid_seeds: list[int]) -> list[int]:
        return self.seeds if self.seeds is not None else grid_seeds[:1]


def recipe_of(cfg: FinetuneConfig) -> dict[str, Any]:
    return {key: getattr(cfg, key) for key in RECIPE_KEYS}


def candidates(base: FinetuneConfig, grid: TuneGrid) -> list[dict[str, Any]]:
    """Every candidate recipe of `grid` around `base`, in the grid's order."""
    return [
        {"optimizer": optimizer, "lr": base.lr * scale, "weight_decay": decay}
        for scale, decay, optimizer in itertools.product(
            grid.lr_scale,
            grid.weight_decay if grid.weight_decay is not None else [base.weight_decay],
            grid.optimizer if grid.optimizer is not None else [base.optimizer],
        )
    ]


def distance(recipe: dict[str, Any], base: FinetuneConfig) -> float:
    """How far a candidate stands from the method's own recipe (for ties)."""
    return (
        abs(math.log(recipe["lr"] / base.lr))
        + (recipe["weight_decay"] != base.weight_decay)
        + (recipe["optimizer"] != base.optimizer)
    )


def score(runs: list[dict[str, float]]) -> dict[str, float]:
    """A candidate's validation scores: each metric of its best epochs, averaged over seeds."""
    return {key: sum(run[key] for run in runs) / len(runs) for key in runs[0]}


def choose(tried: list[dict[str, Any]], base: FinetuneConfig) -> int:
    """The index of the best candidate by mean validation score; ties to the nearest recipe."""
    return max(
        range(len(tried)),
        key=lambda i: (
            selection_key(tried[i]["val"], base.select),
            -distance(tried[i]["recipe"], base),
            -i,
        ),
    )


def read_tuning(path: Path, dataset: str, method: str) -> dict[str, Any]:
    """A tune job's file, checked to be the one of this dataset and method."""
    try:
        tuned = read_json(path)
    except (OSError, ValueError) as exc:
        raise ShpeftError(
            f"{path}: not a readable tuning file ({exc}); rerun its tune job"
        ) from None
    if not isinstance(tuned, dict) or "chosen" not in tuned:
        raise ShpeftError(f"{path}: not a tuning file (no 'chosen' recipe); rerun its tune job")
    if (tuned.get("dataset"), tuned.get("method")) != (dataset, method):
        raise ShpeftError(
            f"{path}: the tuned recipe of {tuned.get('dataset')} x {tuned.get('method')}, not of "
            f"{dataset} x {method}"
        )
    return tuned
