"""The `aggregate` step: the grid's runs in one table, with seed statistics and DVC metrics."""

from __future__ import annotations

import logging
from itertools import product
from typing import Any

import pandas as pd

from shpeft import paths
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, write_json
from shpeft.params import run_methods

log = logging.getLogger(__name__)

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")
COUNTS = ("trainable_backbone", "trainable_head", "trainable_fraction", "backbone_params")
KEYS = ["dataset", "method"]


def grid(params: dict[str, Any]) -> list[tuple[str, str, int]]:
    return list(product(params["grid"]["datasets"], run_methods(params), params["seeds"]))


def collect_runs(params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per run (test metrics and trainable counts) and the per-epoch curves of all runs."""
    rows, curves = [], []
    for dataset, method, seed in grid(params):
        run = paths.run_dir(dataset, method, seed)
        try:
            metrics = read_json(run / "metrics.json")
            history = pd.read_csv(run / "history.csv")
        except (OSError, ValueError) as exc:
            raise ShpeftError(f"{run}: run outputs missing or unreadable ({exc})") from None
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "seed": seed,
                **metrics["test"],
                "best_epoch": metrics["best_epoch"],
                **{k: metrics[k] for k in COUNTS},
            }
        )
        curves.append(history.assign(dataset=dataset, method=method, seed=seed))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def seed_statistics(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and (sample) standard deviation over seeds, per dataset and method."""
    columns = [*METRICS, *COUNTS]
    grouped = runs.groupby(KEYS, sort=False)[columns]
    stats = []
    for name, frame in (("mean", grouped.mean()), ("std", grouped.std(ddof=1))):
        stats.append(frame.reset_index().assign(seed=name))
    return pd.concat(stats, ignore_index=True)


def markdown(runs: pd.DataFrame) -> str:
    grouped = runs.groupby(KEYS, sort=False)
    mean, std, n = grouped[list(METRICS)].mean(), grouped[list(METRICS)].std(ddof=1), grouped.size()
    table = grouped[["trainable_backbone", "trainable_head", "trainable_fraction"]].first()
    for metric in METRICS:
        table[metric] = [
            f"{m:.4f} ± {s:.4f}" if k > 1 else f"{m:.4f}"
            for m, s, k in zip(mean[metric], std[metric].fillna(0), n, strict=True)
        ]
    table["trainable_fraction"] = table["trainable_fraction"].map(lambda f: f"{f:.2e}")
    table["seeds"] = n
    per_seed = runs[[*KEYS, "seed", *METRICS, "best_epoch"]]
    return (
        "## Test metrics, mean ± std over seeds\n\n"
        + table.reset_index().to_markdown(index=False, floatfmt=".4f")
        + "\n\n## Every run\n\n"
        + per_seed.to_markdown(index=False, floatfmt=".4f")
        + "\n"
    )


def dvc_metrics(runs: pd.DataFrame) -> dict[str, Any]:
    grouped = runs.groupby(KEYS, sort=False)[list(METRICS)]
    out: dict[str, Any] = {}
    for (dataset, method), frame in grouped:
        out.setdefault(dataset, {})[method] = {
            **{f"{m}_mean": float(frame[m].mean()) for m in METRICS},
            **{
                f"{m}_std": float(frame[m].std(ddof=1)) if len(frame) > 1 else None for m in METRICS
            },
        }
    return out


def aggregate(params: dict[str, Any]) -> pd.DataFrame:
    runs, curves = collect_runs(params)
    summary = pd.concat([runs.astype({"seed": str}), seed_statistics(runs)], ignore_index=True)
    summary = summary[[*KEYS, "seed", *METRICS, "best_epoch", *COUNTS]]
    with atomic_path(paths.tables_dir()) as tmp:
        tmp.mkdir()
        summary.to_csv(tmp / paths.summary_csv().name, index=False)
        (tmp / paths.summary_md().name).write_text(markdown(runs))
        curves.to_csv(tmp / paths.curves_csv().name, index=False)
    write_json(paths.metrics_file(), dvc_metrics(runs))
    log.info("aggregated %d runs", len(runs))
    return summary
