"""The pipeline's steps, one module each: `run(job, inputs, **sections)` takes a job of
`shpeft.dag`, its input paths and the params sections the DAG says it reads. The steps that make
one thing from a few (prepare, backbone, score, mask) also offer that work as a function of
explicit paths, for use from Python; `run_job` runs any job as its command would."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shpeft import dag

if TYPE_CHECKING:
    from shpeft.params import Params


def run_job(params: Params, step: str, **wildcards: Any) -> Any:
    """Run one job in this process, as its `shpeft <step>` command does."""
    found = dag.STEPS[step]
    job = dag.Job(found, {name: str(wildcards[name]) for name in found.over}, params.layout)
    sections = {keyword: params.at(path) for keyword, path in job.reads(params).items()}
    return importlib.import_module(found.module).run(job, job.inputs(params), **sections)
