"""The `report` step: `REPORT.md` and a self-contained `report.html` (`shpeft.analysis.report`),
and the grid's MLflow run: the tables, figures and report as artifacts, each method's mean test
scores per dataset as metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from shpeft import paths
from shpeft.analysis.collect import METRICS
from shpeft.analysis.report import REPORT_HTML, REPORT_MD, context, figure_files, html, render
from shpeft.dag import Job
from shpeft.fileio import atomic_path, sha256_file
from shpeft.params import Params
from shpeft.provenance import environment, git, git_commit
from shpeft.tracking import numbers, tracked_run

log = logging.getLogger(__name__)


def run(job: Job, inputs: dict[str, Any], params: Params) -> Path:
    lock = Path("dvc.lock")
    commit = git_commit()
    provenance = {
        "commit": commit or "not a git checkout",
        "checkout": commit or "<commit>",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        # A params file that is new or changed would not come back with `git checkout`.
        "uncommitted": [f for f in params.files if commit and git("status", "--porcelain", f)],
        "lock": sha256_file(lock) if lock.is_file() else "no dvc.lock yet",
    }
    text = render(context(inputs, params, environment(), provenance))
    out = job.outputs["report"]
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / REPORT_MD).write_text(text)
        (tmp / REPORT_HTML).write_text(
            html(text, figure_files(inputs["figures"], inputs["sweeps"], inputs["study"]))
        )
    log.info("report written to %s", out)
    log_grid(params, inputs, out)
    return out / REPORT_MD


def log_grid(params: Params, inputs: dict[str, Any], report: Path) -> None:
    summary = pd.read_csv(Path(inputs["tables"]) / paths.SUMMARY_CSV, dtype={"seed": str})
    means = summary[summary["seed"] == "mean"]
    scores = {
        f"{row.dataset}.{row.method}.{metric}": getattr(row, metric)
        for row in means.itertuples()
        for metric in METRICS
    }
    grid = {"grid": params.grid.model_dump(), "seeds": params.seeds}
    with tracked_run(f"{params.experiment}-grid", {"step": "report"}, grid) as tracker:
        tracker.log_metrics(numbers(scores))
        for name, folder in (("tables", inputs["tables"]), ("figures", inputs["figures"])):
            tracker.log_artifact(folder, name)
        tracker.log_artifact(report, "report")
