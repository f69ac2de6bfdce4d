"""The pipeline's steps, one module each: `run(job, inputs, **sections)` takes a job of
`shpeft.dag`, its input paths and the params sections the DAG says it reads. The steps that make
one thing from a few (prepare, backbone, score, mask) also offer that work as a function of
explicit paths, for use from Python; `run_job` runs any job as its command would."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shpeft import dag

if TYPE_CHECKING:
    from shpeft.params import Params


def run_job(params: Params, step: str, **wildcards: Any) -> Any:
    """Run one job in this process, as its `shpeft <step>` command does."""
    from shpeft.tracking import configure, log_job

    found = dag.STEPS[step]
    job = dag.Job(found, {name: str(wildcards[name]) for name in found.over}, params.layout)
    sections = {
        keyword: params.at(path)
        if isinstance(path, str)
        else {key.rsplit(".", 1)[-1]: params.at(key) for key in path}
        for keyword, path in job.reads(params).items()
    }
    configure(params.tracking, params.experiment)
    result = importlib.import_module(found.module).run(job, job.inputs(params), **sections)
    if found.logged:
        files = [f for key in found.logged for f in _json_files(job.outputs[key])]
        tags = {"step": found.name, **job.wildcards}
        name = "-".join([found.command, *job.wildcards.values()])
        config = {k: _plain(v) for k, v in sections.items()}
        log_job(name, tags, config, result, files)
    return result


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _json_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.json"))
    return [path] if path.suffix == ".json" else []
