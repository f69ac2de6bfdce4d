"""The `report` step: `REPORT.md` and a self-contained `report.html` (`shpeft.analysis.report`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shpeft.analysis.report import REPORT_HTML, REPORT_MD, context, figure_files, html, render
from shpeft.dag import Job
from shpeft.fileio import atomic_path, sha256_file
from shpeft.params import Params
from shpeft.provenance import environment, git, git_commit

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
    return out / REPORT_MD
