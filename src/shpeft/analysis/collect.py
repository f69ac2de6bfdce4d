"""The grid's run folders read into frames: one row per run, its curves, its detailed metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shpeft.analysis.stats import SCALARS, StatsConfig, bootstrap_intervals, detailed_metrics
from shpeft.methods.registry import methods
from shpeft.runs import RunFolder

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")
COUNTS = ("trainable_backbone", "trainable_head", "trainable_fraction", "backbone_params")
KEYS = ["dataset", "method"]


def run_key(run: RunFolder) -> dict[str, object]:
    config = run.config()
    return {"dataset": config["dataset"], "method": config["method"], "seed": config["seed"]}


def collect_runs(run_dirs: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per run (test metrics, the selected epoch's validation metrics as `val_<name>`,
    trainable counts, whether its method is a reference with hindsight) and the per-epoch curves
    of all runs."""
    known = methods()
    rows, curves = [], []
    for run in map(RunFolder, run_dirs):
        key, metrics = run_key(run), run.metrics()
        rows.append(
            {
                **key,
                "hindsight": known[run.config()["method_config"]["kind"]].hindsight,
                **metrics["test"],
                **{f"val_{k}": v for k, v in metrics["val"].items()},
                "best_epoch": metrics["best_epoch"],
                **{k: metrics[k] for k in COUNTS},
            }
        )
        curves.append(run.history().assign(**key))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def run_details(run_dirs: Sequence[Path], cfg: StatsConfig) -> pd.DataFrame:
    """Per run, from its test predictions: every scalar with its interval, recall, confusion."""
    rows = []
    for run in map(RunFolder, run_dirs):
        labels, probs, names = run.probabilities()
        detail = detailed_metrics(labels, probs, names, cfg.ece_bins)
        intervals = bootstrap_intervals(labels, probs, cfg)
        row = run_key(run)
        for name in SCALARS:
            low, high = intervals.get(name, (float("nan"), float("nan")))
            row.update({name: detail[name], f"{name}_low": low, f"{name}_high": high})
        row.update({f"recall_{c}": r for c, r in detail["recall"].items()})
        row["confusion"] = json.dumps(detail["confusion"])
        rows.append(row)
    return pd.DataFrame(rows)
