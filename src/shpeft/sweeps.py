"""Sweeps: a sparse method retrained with its mask's `budget` or `rho` set to each of a few values.

`sweeps.budget` varies how many backbone weights train (a fraction, e.g. 1e-5 to 1e-2),
`sweeps.rho` the hybrid ratio (0: task-agnostic entries only, 1: task-specific only). Each value
is a point: the method's mask variant rebuilt with that one key changed (`shpeft sweep-mask`),
then one run per dataset and seed (`shpeft sweep-finetune`), all under
`results/sweeps/<sweep>/points/<value>/<dataset>/`; the `sweep` step collects them into a table
and a figure. Values appear in paths as Python's str() writes them (`0.001`, `1e-05`), which is
how DVC renders them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from shpeft.config import Name, Section, Unique
from shpeft.errors import ShpeftError

if TYPE_CHECKING:
    from shpeft.selection.masks import MaskConfig

#: The sweeps there are, each varying the mask key of its name; the axis label of its figure.
AXES = {
    "budget": "budget: fraction of backbone weights that train",
    "rho": "rho: task-specific share of the budget",
}


class SweepConfig(Section):
    """One sweep: which method is retrained, at which values, on which datasets and seeds."""

    method: Name = "sh-peft"
    """The sparse method retrained at each value (a method with a `mask`)."""
    values: Unique[list[float]] = []
    """Values of the mask key; an empty list skips the sweep."""
    datasets: Unique[list[Name]] = []
    """Datasets (of the grid) every value runs on."""
    seeds: Unique[list[Annotated[int, Field(ge=0)]]] = Field(default_factory=lambda: [0])
    """Seeds every value runs with."""


class BudgetSweep(SweepConfig):
    """The budget sweep: fractions of the backbone's weights."""

    values: Unique[list[Annotated[float, Field(gt=0, le=1)]]] = []
    """Budgets, as fractions of all backbone weights (write 0.00001, not 1e-5: YAML reads that as
    text)."""


class RhoSweep(SweepConfig):
    """The hybrid-ratio sweep: task-specific shares of the budget."""

    values: Unique[list[Annotated[float, Field(ge=0, le=1)]]] = []
    """Shares rho of the task-specific side, from 0 (task-agnostic only) to 1."""


class Sweeps(Section):
    """The budget and rho sweeps (each skipped while its `values` are empty)."""

    budget: BudgetSweep = Field(default_factory=BudgetSweep)
    """Retrain at each mask budget."""
    rho: RhoSweep = Field(default_factory=RhoSweep)
    """Retrain at each hybrid ratio."""

    def active(self) -> dict[str, SweepConfig]:
        return {name: cfg for name, cfg in self if cfg.values}


def swept_value(cfg: SweepConfig, sweep: str, text: str) -> float:
    """The value of `sweep` that `text` names as a path does (Python's str() of it)."""
    chosen = [v for v in cfg.values if str(v) == text]
    if not chosen:
        raise ShpeftError(f"--value {text}: not one of sweeps.{sweep}.values {cfg.values}")
    return chosen[0]


def point_mask(mask: MaskConfig, sweep: str, value: float) -> MaskConfig:
    """The sweep method's mask variant with the swept key set (a `budget_count` would win over
    the swept budget fraction, so it is cleared)."""
    change = {sweep: value, **({"budget_count": None} if sweep == "budget" else {})}
    return mask.model_copy(update=change)
