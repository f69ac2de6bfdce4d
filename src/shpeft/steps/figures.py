"""The `figures` step: every figure from the tables, the run folders, the mask statistics and the
prepared test images (`shpeft.analysis.plots` draws them)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from shpeft import paths
from shpeft.analysis import plots
from shpeft.analysis.collect import run_key
from shpeft.analysis.stats import StatsConfig, TablesConfig
from shpeft.dag import Job
from shpeft.data.prepared import PreparedDataset
from shpeft.fileio import atomic_path, read_json
from shpeft.params import Grid
from shpeft.runs import RunFolder

log = logging.getLogger(__name__)

#: Failure cases are shown for SH-PEFT where it ran, else for the grid's first method.
FAILURES_OF = "sh-peft"


def run(
    job: Job,
    inputs: dict[str, Any],
    grid: Grid,
    seeds: list[int],
    stats: StatsConfig,
    tables_config: TablesConfig,
) -> None:
    tables = Path(inputs["tables"])
    summary = pd.read_csv(tables / paths.SUMMARY_CSV)
    runs = summary[~summary["seed"].isin(["mean", "std"])]
    details = pd.read_csv(tables / paths.detail_table(".csv"))
    curves = pd.read_csv(tables / paths.CURVES_CSV)
    data = {Path(d).name: PreparedDataset.load(d) for d in inputs["data"]}
    folders = {tuple(run_key(f).values()): f for f in map(RunFolder, inputs["runs"])}
    failing = FAILURES_OF if FAILURES_OF in grid.methods else grid.methods[0]
    with atomic_path(job.outputs["figures"]) as out:
        out.mkdir()
        plots.accuracy_bars(details, out)
        plots.pareto(runs, out)
        plots.training_curves(curves, out)
        plots.trainable_locations(where_methods_train(folders, grid, seeds[0]), out)
        masks = mask_statistics(inputs["masks"])
        if masks:
            plots.hybridity(masks, out)
        plots.confusions(details, {name: d.class_names for name, d in data.items()}, out)
        plots.critical_difference(
            pd.read_csv(tables / paths.RANKS_CSV),
            pd.read_csv(tables / paths.NEMENYI_CSV, index_col=0),  # empty without Friedman
            1 - stats.level,
            cd_title(
                read_json(tables / paths.FRIEDMAN_JSON), tables_config.metrics[0], 1 - stats.level
            ),
            out,
        )
        for dataset in grid.datasets:
            images, _ = data[dataset].part("test")
            predictions = folders[dataset, failing, seeds[0]].predictions()
            plots.failure_cases(
                dataset, failing, seeds[0], images, predictions, data[dataset].class_names, 8, out
            )
    log.info("figures written to %s", job.outputs["figures"])


def cd_title(friedman: dict[str, Any], metric: str, alpha: float) -> str:
    """What the critical-difference figure shows, or why it shows nothing. The post-hoc bars
    answer a question only where the Friedman test rejects (Demsar 2006); else they describe."""
    where = f"{friedman['methods']} methods on {friedman['datasets']} datasets ({metric})"
    if friedman["note"]:
        return f"{where}: no Friedman test ({friedman['note']})"
    verdict = "rejects" if friedman["p_value"] < alpha else "does not reject: bars descriptive only"
    return f"{where}: mean ranks; Friedman p = {friedman['p_value']:.3g} {verdict}; Nemenyi bars"


def where_methods_train(
    folders: dict[tuple[str, str, int], RunFolder], grid: Grid, seed: int
) -> dict[str, Counter]:
    """Per method, its trainable parameters per (block, layer), summed over the datasets' runs
    with `seed` (the same for every dataset but for sparse methods, whose masks differ)."""
    return {
        method: sum(
            (folders[dataset, method, seed].locations() for dataset in grid.datasets), Counter()
        )
        for method in grid.methods
    }


def mask_statistics(files: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """Mask statistics by (variant, dataset), from `masks/<dataset>/seed<s>/<variant>.json` (the
    DAG hands the first scoring seed's)."""
    return {
        (Path(f).stem, Path(f).parent.parent.name): read_json(f) for f in files if Path(f).is_file()
    }
