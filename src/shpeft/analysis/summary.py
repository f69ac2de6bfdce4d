"""Per-seed and per-method summaries of the grid's runs: the summary table, its Markdown, the
detail table's Markdown and DVC's metrics file."""

from __future__ import annotations

from typing import Any

import pandas as pd

from shpeft.analysis.collect import COUNTS, KEYS, METRICS
from shpeft.analysis.stats import SCALARS, level_label


def seed_statistics(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and (sample) standard deviation over seeds, per dataset and method."""
    columns = [*METRICS, *COUNTS]
    grouped = runs.groupby(KEYS, sort=False)[columns]
    stats = []
    for name, frame in (("mean", grouped.mean()), ("std", grouped.std(ddof=1))):
        stats.append(frame.reset_index().assign(seed=name))
    return pd.concat(stats, ignore_index=True)


def summary_markdown(runs: pd.DataFrame) -> str:
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


def detail_markdown(details: pd.DataFrame, level: float) -> str:
    """Per dataset: every run's scalar metrics as `value [low, high]`."""
    parts = [
        f"## Test metrics per run, with {level_label(level)} bootstrap intervals over test cases\n"
    ]
    for dataset, frame in details.groupby("dataset", sort=False):
        table = frame[["method", "seed"]].copy()
        for name in SCALARS:
            table[name] = [
                f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else f"{v:.3f}"
                for v, lo, hi in zip(
                    frame[name], frame[f"{name}_low"], frame[f"{name}_high"], strict=True
                )
            ]
        recalls = [c for c in frame.columns if c.startswith("recall_") and frame[c].notna().any()]
        for column in recalls:
            table[column] = frame[column].map(lambda r: f"{r:.3f}")
        parts.append(f"### {dataset}\n\n{table.to_markdown(index=False)}\n")
    return "\n".join(parts)
