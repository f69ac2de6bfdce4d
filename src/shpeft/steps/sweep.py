"""The `sweep` step: a sweep's runs collected into its table (CSV, Markdown) and figure."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from shpeft import paths
from shpeft.analysis.plots import sweep_figure
from shpeft.analysis.stats import StatsConfig, level_label
from shpeft.analysis.sweep_table import sweep_table
from shpeft.dag import Job
from shpeft.fileio import atomic_path
from shpeft.sweeps import AXES, SweepConfig

log = logging.getLogger(__name__)


def run(
    job: Job, inputs: dict[str, list[Path]], sweep_config: SweepConfig, stats: StatsConfig
) -> pd.DataFrame:
    sweep = job["sweep"]
    table = sweep_table(inputs["runs"], stats)
    with atomic_path(job.outputs["summary"]) as tmp:
        tmp.mkdir()
        table.to_csv(paths.sweep_summary_file(tmp, ".csv"), index=False)
        paths.sweep_summary_file(tmp, ".md").write_text(
            f"## Sweep of `{sweep}` ({sweep_config.method}): validation and test accuracy, mean "
            f"over seeds, {level_label(stats.level)} bootstrap interval over test cases; "
            "`chosen`: the value validation picks per dataset\n\n"
            + table.to_markdown(index=False, floatfmt=".4g")
            + "\n"
        )
        sweep_figure(
            table, sweep, AXES[sweep], log_x=sweep == "budget", out=tmp, name=paths.SWEEP_SUMMARY
        )
    log.info("sweep %s: %d points summarised", sweep, len(table))
    return table
