"""A sweep's runs in one table: per value and dataset, test accuracy over seeds and its interval."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from shpeft.analysis.stats import StatsConfig, seed_mean_interval
from shpeft.runs import RunFolder


def sweep_table(run_dirs: Sequence[Path], stats: StatsConfig) -> pd.DataFrame:
    """Per value and dataset (in the runs' order): test accuracy over seeds, its interval, the
    trainable count. Each run's config records its sweep point."""
    points: dict[tuple, list[RunFolder]] = {}
    for run in map(RunFolder, run_dirs):
        config = run.config()
        point = config["sweep_point"]
        key = (point["sweep"], point["value"], config["dataset"], config["method"])
        points.setdefault(key, []).append(run)
    return pd.DataFrame([_row(key, runs, stats) for key, runs in points.items()])


def _row(key: tuple, runs: list[RunFolder], stats: StatsConfig) -> dict:
    sweep, value, dataset, method = key
    metrics = [run.metrics() for run in runs]
    predictions = [run.predictions() for run in runs]
    accuracy = np.array([m["test"]["accuracy"] for m in metrics])
    predicted = np.stack([frame["predicted"].to_numpy() for frame in predictions])
    low, high = seed_mean_interval(predictions[0]["label"].to_numpy(), predicted, stats)
    return {
        "sweep": sweep,
        "value": value,
        "dataset": dataset,
        "method": method,
        "seeds": len(runs),
        "accuracy": accuracy.mean(),
        "accuracy_std": accuracy.std(ddof=1) if len(accuracy) > 1 else np.nan,
        "accuracy_low": low,
        "accuracy_high": high,
        "trainable_backbone": metrics[0]["trainable_backbone"],
        "trainable_fraction": metrics[0]["trainable_fraction"],
    }
