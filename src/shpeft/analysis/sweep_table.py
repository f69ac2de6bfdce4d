"""A sweep's runs in one table: per value and dataset, validation and test accuracy over seeds,
the test interval, and the value validation would choose (never the test split)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from shpeft.analysis.stats import StatsConfig, seed_mean_interval
from shpeft.runs import RunFolder


def sweep_table(run_dirs: Sequence[Path], stats: StatsConfig) -> pd.DataFrame:
    """Per value and dataset (in the runs' order): validation and test accuracy over seeds, the
    test interval, the trainable count, and `chosen`: the value with the best mean validation
    accuracy of its dataset (ties to the lower validation loss). Each run's config records its
    sweep point."""
    points: dict[tuple, list[RunFolder]] = {}
    for run in map(RunFolder, run_dirs):
        config = run.config()
        point = config["sweep_point"]
        key = (point["sweep"], point["value"], config["dataset"], config["method"])
        points.setdefault(key, []).append(run)
    table = pd.DataFrame([_row(key, runs, stats) for key, runs in points.items()])
    ranked = table.sort_values(["val_accuracy", "val_loss"], ascending=[False, True], kind="stable")
    best = ranked.groupby(["sweep", "dataset", "method"], sort=False).head(1).index
    table["chosen"] = table.index.isin(best)
    return table


def _row(key: tuple, runs: list[RunFolder], stats: StatsConfig) -> dict:
    sweep, value, dataset, method = key
    metrics = [run.metrics() for run in runs]
    predictions = [run.predictions() for run in runs]
    accuracy = np.array([m["test"]["accuracy"] for m in metrics])
    val = pd.DataFrame([m["val"] for m in metrics])
    predicted = np.stack([frame["predicted"].to_numpy() for frame in predictions])
    low, high = seed_mean_interval(predictions[0]["label"].to_numpy(), predicted, stats)
    return {
        "sweep": sweep,
        "value": value,
        "dataset": dataset,
        "method": method,
        "seeds": len(runs),
        "val_accuracy": val["accuracy"].mean(),
        "val_loss": val["loss"].mean(),
        "accuracy": accuracy.mean(),
        "accuracy_std": accuracy.std(ddof=1) if len(accuracy) > 1 else np.nan,
        "accuracy_low": low,
        "accuracy_high": high,
        "trainable_backbone": metrics[0]["trainable_backbone"],
        "trainable_fraction": metrics[0]["trainable_fraction"],
    }
