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

from pydantic import Field, ValidationError

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
    values: Unique[list[int | float]] = []
    """Values of the mask key, as written (they name folders); an empty list skips the sweep."""
    datasets: Unique[list[Name]] | None = None
    """Datasets (of the grid) every value runs on; unset: every dataset of the grid."""
    seeds: Unique[list[Annotated[int, Field(ge=0)]]] = Field(default_factory=lambda: [0])
    """Seeds every value runs with."""


class BudgetSweep(SweepConfig):
    """The budget sweep: fractions of the backbone's weights."""

    values: Unique[list[Annotated[int | float, Field(gt=0, le=1)]]] = []
    """Budgets, as fractions of all backbone weights (write 0.00001, not 1e-5: YAML reads that as
    text)."""


class RhoSweep(SweepConfig):
    """The hybrid-ratio sweep: task-specific shares of the budget."""

    values: Unique[list[Annotated[int | float, Field(ge=0, le=1)]]] = []
    """Shares rho of the task-specific side, from 0 (task-agnostic only) to 1."""


class Sweeps(Section):
    """The budget and rho sweeps (each skipped while its `values` are empty)."""

    budget: BudgetSweep = Field(default_factory=BudgetSweep)
    """Retrain at each mask budget."""
    rho: RhoSweep = Field(default_factory=RhoSweep)
    """Retrain at each hybrid ratio."""

    def active(self) -> dict[str, SweepConfig]:
        return {name: cfg for name, cfg in self if cfg.values}


def swept_value(text: str) -> int | float:
    """The number a sweep value's folder name stands for (Python's str() of it)."""
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise ShpeftError(f"--value {text}: not a number") from None


def point_mask(mask: MaskConfig, sweep: str, value: int | float) -> MaskConfig:
    """The sweep method's mask variant with the swept key set (a `budget_count` would win over
    the swept budget fraction, so it is cleared), checked as the variant itself is."""
    change = {sweep: value, **({"budget_count": None} if sweep == "budget" else {})}
    try:
        return type(mask).model_validate({**mask.model_dump(), **change})
    except ValidationError as exc:
        raise ShpeftError(f"--value {value}: {exc.errors()[0]['msg']} for {sweep}") from None
