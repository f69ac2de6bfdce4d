"""The `aggregate` step: the grid's runs in tables, with statistics, and the DVC metrics.

`summary.*` has every run and the mean and standard deviation over seeds; `detail.*` every run's
test metrics with bootstrap intervals, per-class recall and confusion matrix (from its
`predictions.csv`); `main.*` the paper-shaped comparison with paired tests (`shpeft.tables`).
"""

from __future__ import annotations

import json
import logging
from itertools import product
from typing import Any

import pandas as pd

from shpeft import paths
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, write_json
from shpeft.params import build, run_methods
from shpeft.stats import SCALARS, StatsConfig, bootstrap_intervals, detailed_metrics
from shpeft.tables import comparisons, main_table, to_latex, to_markdown

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


def run_details(params: dict[str, Any], cfg: StatsConfig) -> pd.DataFrame:
    """Per run, from its test predictions: every scalar with its interval, recall, confusion."""
    rows = []
    for dataset, method, seed in grid(params):
        file = paths.run_dir(dataset, method, seed) / "predictions.csv"
        try:
            frame = pd.read_csv(file)
        except (OSError, ValueError) as exc:
            raise ShpeftError(f"{file}: missing or unreadable ({exc})") from None
        prob_columns = [c for c in frame.columns if c.startswith("prob_")]
        labels = frame["label"].to_numpy()
        probs = frame[prob_columns].to_numpy()
        names = [c.removeprefix("prob_") for c in prob_columns]
        detail = detailed_metrics(labels, probs, names, cfg.ece_bins)
        intervals = bootstrap_intervals(labels, probs, cfg)
        row = {"dataset": dataset, "method": method, "seed": seed}
        for name in SCALARS:
            low, high = intervals.get(name, (float("nan"), float("nan")))
            row.update({name: detail[name], f"{name}_low": low, f"{name}_high": high})
        row.update({f"recall_{c}": r for c, r in detail["recall"].items()})
        row["confusion"] = json.dumps(detail["confusion"])
        rows.append(row)
    return pd.DataFrame(rows)


def detail_markdown(details: pd.DataFrame, level: float) -> str:
    """Per dataset: every run's scalar metrics as `value [low, high]`."""
    parts = [f"## Test metrics per run, with {level:.0%} bootstrap intervals over test cases\n"]
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


def aggregate(params: dict[str, Any]) -> pd.DataFrame:
    cfg = build(StatsConfig, params.get("stats", {}))
    runs, curves = collect_runs(params)
    summary = pd.concat([runs.astype({"seed": str}), seed_statistics(runs)], ignore_index=True)
    summary = summary[[*KEYS, "seed", *METRICS, "best_epoch", *COUNTS]]
    details = run_details(params, cfg)
    tests = comparisons(runs, cfg.reference, "accuracy")
    table, best = main_table(runs, tests, "accuracy", cfg.reference)
    caption = (
        "Test accuracy, mean ± std over seeds "
        f"({', '.join(map(str, params['seeds']))}); best mean per column in bold; p: two-sided "
        "Wilcoxon signed-rank test paired over datasets and seeds"
    )
    with atomic_path(paths.tables_dir()) as tmp:
        tmp.mkdir()
        summary.to_csv(tmp / paths.summary_csv().name, index=False)
        (tmp / paths.summary_md().name).write_text(markdown(runs))
        curves.to_csv(tmp / paths.curves_csv().name, index=False)
        details.to_csv(tmp / paths.detail_table(".csv").name, index=False)
        (tmp / paths.detail_table(".md").name).write_text(detail_markdown(details, cfg.level))
        tests.to_csv(tmp / paths.comparisons_csv().name, index=False)
        pareto = runs.groupby("method", sort=False)[["trainable_fraction", "accuracy"]].mean()
        pareto.reset_index().to_csv(tmp / paths.pareto_csv().name, index=False)
        table.to_csv(tmp / paths.main_table(".csv").name, index=False)
        (tmp / paths.main_table(".md").name).write_text(to_markdown(table, best, caption))
        (tmp / paths.main_table(".tex").name).write_text(to_latex(table, best, caption))
    write_json(paths.metrics_file(), dvc_metrics(runs))
    log.info("aggregated %d runs", len(runs))
    return summary
