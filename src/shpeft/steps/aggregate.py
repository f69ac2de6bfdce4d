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
from shpeft.analysis.compare import pairwise, ranks
from shpeft.analysis.stats import LABELS, PublishedResult, StatsConfig, TablesConfig, level_label
from shpeft.analysis.summary import detail_markdown, dvc_metrics, seed_statistics, summary_markdown
from shpeft.analysis.tables import main_table, to_latex, to_markdown, with_published
from shpeft.dag import Job
from shpeft.fileio import atomic_path, write_json

log = logging.getLogger(__name__)


def run(
    job: Job,
    inputs: dict[str, list[Path]],
    seeds: list[int],
    stats: StatsConfig,
    tables: TablesConfig,
    published: list[PublishedResult],
) -> pd.DataFrame:
    runs, curves = collect_runs(inputs["runs"])
    summary = pd.concat([runs.astype({"seed": str}), seed_statistics(runs)], ignore_index=True)
    summary = summary[[*KEYS, "seed", *METRICS, "best_epoch", *COUNTS]]
    details = run_details(inputs["runs"], stats)
    first = tables.metrics[0]
    # References with hindsight are shown, never ranked or tested.
    compared = runs[~runs["hindsight"]]
    references = list(dict.fromkeys(runs.loc[runs["hindsight"], "method"]))
    pairs = pairwise(compared, first, stats)
    average_ranks, friedman = ranks(compared, first, stats)
    table, best = main_table(
        runs, pairs, average_ranks, tables.metrics, stats.focus, stats.level, references
    )
    caption = main_caption(tables.metrics, seeds, stats, pairs, friedman, references)
    table, note = with_published(table, published)
    caption += note
    with atomic_path(job.outputs["tables"]) as tmp:
        tmp.mkdir()
        summary.to_csv(tmp / paths.SUMMARY_CSV, index=False)
        (tmp / paths.SUMMARY_MD).write_text(summary_markdown(runs))
        curves.to_csv(tmp / paths.CURVES_CSV, index=False)
        details.to_csv(tmp / paths.detail_table(".csv"), index=False)
        (tmp / paths.detail_table(".md")).write_text(detail_markdown(details, stats.level))
        pairs.to_csv(tmp / paths.COMPARISONS_CSV, index=False)
        average_ranks.to_csv(tmp / paths.RANKS_CSV, index=False)
        friedman.pop("nemenyi").to_csv(tmp / paths.NEMENYI_CSV)
        write_json(tmp / paths.FRIEDMAN_JSON, friedman)
        pareto = runs.groupby("method", sort=False)[["trainable_fraction", "accuracy"]].mean()
        pareto.reset_index().to_csv(tmp / paths.PARETO_CSV, index=False)
        table.to_csv(tmp / paths.main_table(".csv"), index=False)
        (tmp / paths.main_table(".md")).write_text(to_markdown(table, best, caption))
        (tmp / paths.main_table(".tex")).write_text(to_latex(table, best, caption))
    write_json(job.outputs["metrics"], dvc_metrics(runs))
    log.info("aggregated %d runs", len(runs))
    return summary


def main_caption(
    metrics: list[str],
    seeds: list[int],
    stats: StatsConfig,
    pairs: pd.DataFrame,
    friedman: dict,
    references: list[str],
) -> str:
    """What the main table's numbers are, and the tests over datasets of its first metric."""
    shown = ", ".join(f"{LABELS[m]} ({m})" for m in metrics)
    text = (
        f"Test {shown}: mean over seeds ({', '.join(map(str, seeds))}) ± half-width of its "
        f"{level_label(stats.level)} t-interval; best mean per column in bold. Over the "
        f"{friedman['datasets']} datasets ({metrics[0]}, seeds averaged): mean rank (1 is best); "
    )
    if friedman["note"]:
        text += f"Friedman test n/a ({friedman['note']}); "
    else:
        text += f"Friedman p = {friedman['p_value']:.3g}; "
    text += (
        f"p: two-sided Wilcoxon signed-rank test of {stats.focus} against each method "
        f"({stats.zero_method} for zero differences), Holm-corrected."
    )
    if not pairs.empty and pairs["best_other"].any():
        best_other = pairs.loc[pairs["best_other"], "method"].iloc[0]
        text += f" Best other method on validation: {best_other}."
    if references:
        text += (
            f" {', '.join(references)}: reference with hindsight (its entries are those the full "
            "fine-tuning run of the same seed changed most), outside the ranks, tests and bold."
        )
    return text
