"""Sweeps: a sparse method retrained with its mask's `budget` or `rho` set to each of a few values.

`sweeps.budget` varies how many backbone weights train (a fraction, e.g. 1e-5 to 1e-2),
`sweeps.rho` the hybrid ratio (0: task-agnostic entries only, 1: task-specific only). Each value
is a point: the method's mask variant rebuilt with that key (`shpeft mask --sweep budget=0.001`),
then one run per dataset and seed (`shpeft finetune --sweep budget=0.001`), all under
`results/sweeps/<sweep>/<value>/<dataset>/`. The `sweep` step collects them into
`results/sweeps/<sweep>/summary/`: test accuracy per value and dataset (mean and std over seeds, a
bootstrap interval over test cases) as a table and a figure. Values appear in paths as Python
prints them (`0.001`, `1e-05`), as Snakemake and DVC both write them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shpeft import paths
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json
from shpeft.params import build, deep_merge
from shpeft.stats import StatsConfig, seed_mean_interval

log = logging.getLogger(__name__)

#: The sweeps there are: each varies the mask key of its name. Axis label of its figure.
SWEEPS = {
    "budget": "budget: fraction of backbone weights that train",
    "rho": "rho: task-specific share of the budget",
}


@dataclass
class SweepConfig:
    #: The sparse method retrained at each value (a method with a `mask`).
    method: str
    #: Values of the mask key; an empty list skips the sweep.
    values: list[float]
    #: Datasets (of the grid) and seeds every value runs on.
    datasets: list[str]
    seeds: list[int]


@dataclass
class SweepPoint:
    """One value of one sweep, with the params that build its mask."""

    sweep: str
    value: str
    method: str
    variant: str
    params: dict[str, Any]


def sweep_config(params: dict[str, Any], sweep: str) -> SweepConfig:
    defined = params.get("sweeps", {})
    if sweep not in defined:
        raise ShpeftError(f"sweeps: no sweep named '{sweep}' (defined: {', '.join(defined)})")
    return build(SweepConfig, defined[sweep])


def active_sweeps(params: dict[str, Any]) -> list[str]:
    return [name for name in params.get("sweeps", {}) if sweep_config(params, name).values]


def point(params: dict[str, Any], text: str) -> SweepPoint:
    """The point named `SWEEP=VALUE` (e.g. `budget=0.001`), VALUE written as in the params."""
    sweep, sep, value = text.partition("=")
    if not sep:
        raise ShpeftError(f"--sweep '{text}': expected SWEEP=VALUE, e.g. budget=0.001")
    cfg = sweep_config(params, sweep)
    chosen = [v for v in cfg.values if str(v) == value]
    if not chosen:
        raise ShpeftError(
            f"--sweep '{text}': {value} is not one of sweeps.{sweep}.values {cfg.values}"
        )
    variant = params["methods"][cfg.method]["mask"]
    # A budget set as a count would win over the swept fraction: clear it.
    change = {sweep: chosen[0], **({"budget_count": None} if sweep == "budget" else {})}
    new = deep_merge(params, {"masks": {variant: change}})
    return SweepPoint(sweep, value, cfg.method, variant, new)


def _run_outputs(run: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    try:
        return read_json(run / "metrics.json"), pd.read_csv(run / "predictions.csv")
    except (OSError, ValueError) as exc:
        raise ShpeftError(f"{run}: run outputs missing or unreadable ({exc})") from None


def sweep_table(params: dict[str, Any], sweep: str) -> pd.DataFrame:
    """Per value and dataset: test accuracy over seeds, its interval, the trainable count."""
    cfg = sweep_config(params, sweep)
    stats = build(StatsConfig, params.get("stats", {}))
    rows = []
    for value in cfg.values:
        for dataset in cfg.datasets:
            outputs = [
                _run_outputs(paths.sweep_run_dir(sweep, str(value), dataset, seed))
                for seed in cfg.seeds
            ]
            accuracy = np.array([metrics["test"]["accuracy"] for metrics, _ in outputs])
            predicted = np.stack([frame["predicted"].to_numpy() for _, frame in outputs])
            low, high = seed_mean_interval(outputs[0][1]["label"].to_numpy(), predicted, stats)
            first = outputs[0][0]
            rows.append(
                {
                    "sweep": sweep,
                    "value": value,
                    "dataset": dataset,
                    "method": cfg.method,
                    "seeds": len(cfg.seeds),
                    "accuracy": accuracy.mean(),
                    "accuracy_std": accuracy.std(ddof=1) if len(accuracy) > 1 else np.nan,
                    "accuracy_low": low,
                    "accuracy_high": high,
                    "trainable_backbone": first["trainable_backbone"],
                    "trainable_fraction": first["trainable_fraction"],
                }
            )
    return pd.DataFrame(rows)


def summarise(params: dict[str, Any], sweep: str) -> pd.DataFrame:
    """The `sweep` step: the sweep's table (CSV, Markdown) and figure (PNG, PDF)."""
    from shpeft.figures import sweep_figure

    table = sweep_table(params, sweep)
    level = build(StatsConfig, params.get("stats", {})).level
    with atomic_path(paths.sweep_summary_dir(sweep)) as tmp:
        tmp.mkdir()
        table.to_csv(tmp / "sweep.csv", index=False)
        (tmp / "sweep.md").write_text(
            f"## Sweep of `{sweep}` ({table['method'].iloc[0]}): test accuracy, mean over seeds, "
            f"{level:.0%} bootstrap interval over test cases\n\n"
            + table.to_markdown(index=False, floatfmt=".4g")
            + "\n"
        )
        sweep_figure(table, sweep, SWEEPS[sweep], log_x=sweep == "budget", out=tmp)
    log.info("sweep %s: %d points summarised", sweep, len(table))
    return table
