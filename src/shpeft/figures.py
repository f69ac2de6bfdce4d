"""The `figures` step: seaborn figures drawn from the aggregate tables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from shpeft import paths  # noqa: E402
from shpeft.fileio import atomic_path  # noqa: E402

log = logging.getLogger(__name__)


def _save(grid: sns.FacetGrid, path: Path) -> None:
    grid.savefig(path, dpi=120)
    plt.close(grid.figure)


def accuracy_bars(runs: pd.DataFrame, path: Path) -> None:
    """Test accuracy per method, one panel per dataset: bar = mean, whisker = sd, dots = seeds."""
    grid = sns.catplot(
        runs,
        x="method",
        y="accuracy",
        col="dataset",
        kind="bar",
        errorbar="sd",
        hue="method",
        palette="deep",
        height=3.2,
        aspect=1.1,
        alpha=0.8,
        legend=False,
    )
    grid.map_dataframe(sns.stripplot, x="method", y="accuracy", color="black", size=4, jitter=0.15)
    grid.set_axis_labels("", "test accuracy").set(ylim=(0, 1))
    grid.tick_params(axis="x", rotation=30)
    _save(grid, path)


def training_curves(curves: pd.DataFrame, path: Path) -> None:
    """Validation accuracy per epoch, mean over seeds with a sd band, one panel per dataset."""
    grid = sns.relplot(
        curves,
        x="epoch",
        y="val_accuracy",
        hue="method",
        col="dataset",
        kind="line",
        errorbar="sd",
        height=3.2,
        aspect=1.1,
        marker="o",
    )
    grid.set_axis_labels("epoch", "validation accuracy")
    _save(grid, path)


def figures(params: dict[str, Any]) -> None:
    summary = pd.read_csv(paths.summary_csv())
    runs = summary[~summary["seed"].isin(["mean", "std"])]
    curves = pd.read_csv(paths.curves_csv())
    with atomic_path(paths.figures_dir()) as out:
        out.mkdir()
        accuracy_bars(runs, out / "accuracy_by_method.png")
        training_curves(curves, out / "training_curves.png")
    log.info("figures written to %s", paths.figures_dir())
