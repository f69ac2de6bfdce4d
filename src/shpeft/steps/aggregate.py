"""The `aggregate` step: the grid's runs in tables, with statistics, and the DVC metrics.

`summary.*` has every run and the mean and standard deviation over seeds; `detail.*` every run's
test metrics with bootstrap intervals, per-class recall and confusion matrix (from its
`predictions.csv`); `main.*` the paper-shaped comparison with paired tests
(`shpeft.analysis.tables`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from shpeft import paths
from shpeft.analysis.collect import COUNTS, KEYS, METRICS, collect_runs, run_details
from shpeft.analysis.stats import StatsConfig
from shpeft.analysis.summary import detail_markdown, dvc_metrics, seed_statistics, summary_markdown
from shpeft.analysis.tables import comparisons, main_table, to_latex, to_markdown
from shpeft.dag import Job
from shpeft.fileio import atomic_path, write_json

log = logging.getLogger(__name__)


def run(
    job: Job, inputs: dict[str, list[Path]], seeds: list[int], stats: StatsConfig
) -> pd.DataFrame:
    runs, curves = collect_runs(inputs["runs"])
    summary = pd.concat([runs.astype({"seed": str}), seed_statistics(runs)], ignore_index=True)
    summary = summary[[*KEYS, "seed", *METRICS, "best_epoch", *COUNTS]]
    details = run_details(inputs["runs"], stats)
    tests = comparisons(runs, stats.reference, "accuracy")
    table, best = main_table(runs, tests, "accuracy", stats.reference)
    caption = (
        "Test accuracy, mean ± std over seeds "
        f"({', '.join(map(str, seeds))}); best mean per column in bold; p: two-sided "
        "Wilcoxon signed-rank test paired over datasets and seeds"
    )
    with atomic_path(job.outputs["tables"]) as tmp:
        tmp.mkdir()
        summary.to_csv(tmp / paths.SUMMARY_CSV, index=False)
        (tmp / paths.SUMMARY_MD).write_text(summary_markdown(runs))
        curves.to_csv(tmp / paths.CURVES_CSV, index=False)
        details.to_csv(tmp / paths.detail_table(".csv"), index=False)
        (tmp / paths.detail_table(".md")).write_text(detail_markdown(details, stats.level))
        tests.to_csv(tmp / paths.COMPARISONS_CSV, index=False)
        pareto = runs.groupby("method", sort=False)[["trainable_fraction", "accuracy"]].mean()
        pareto.reset_index().to_csv(tmp / paths.PARETO_CSV, index=False)
        table.to_csv(tmp / paths.main_table(".csv"), index=False)
        (tmp / paths.main_table(".md")).write_text(to_markdown(table, best, caption))
        (tmp / paths.main_table(".tex")).write_text(to_latex(table, best, caption))
    write_json(job.outputs["metrics"], dvc_metrics(runs))
    log.info("aggregated %d runs", len(runs))
    return summary
