"""A sweep's runs in one table: per value and dataset, test accuracy over seeds and its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shpeft import paths
from shpeft.analysis.stats import StatsConfig, seed_mean_interval
from shpeft.runs import RunFolder
from shpeft.sweeps import SweepConfig


def sweep_table(sweep: str, cfg: SweepConfig, stats: StatsConfig) -> pd.DataFrame:
    """Per value and dataset: test accuracy over seeds, its interval, the trainable count."""
    rows = []
    for value in cfg.values:
        for dataset in cfg.datasets:
            runs = [
                RunFolder(paths.sweep_run_dir(sweep, str(value), dataset, seed))
                for seed in cfg.seeds
            ]
            metrics = [run.metrics() for run in runs]
            predictions = [run.predictions() for run in runs]
            accuracy = np.array([m["test"]["accuracy"] for m in metrics])
            predicted = np.stack([frame["predicted"].to_numpy() for frame in predictions])
            low, high = seed_mean_interval(predictions[0]["label"].to_numpy(), predicted, stats)
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
                    "trainable_backbone": metrics[0]["trainable_backbone"],
                    "trainable_fraction": metrics[0]["trainable_fraction"],
                }
            )
    return pd.DataFrame(rows)
