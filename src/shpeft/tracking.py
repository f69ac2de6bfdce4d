"""MLflow tracking: one run per finetune job, in a store created once before jobs run in parallel.

The default store is an SQLite database at the project root (an absolute `sqlite:///` URI, so
every job finds it whatever its working directory); `MLFLOW_TRACKING_URI` overrides it, e.g. to a
team's `mlflow server`. Creating a fresh SQLite store runs schema migrations; concurrent first
writes would corrupt it, so creation is serialised by a file lock and also done up front by the
workflow (`shpeft tracking-init`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
DEFAULT_EXPERIMENT = "shpeft"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DB_FILE}"


@contextlib.contextmanager
def _store_lock() -> Iterator[None]:
    with open(Path.cwd() / f"{DB_FILE}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def init_tracking(experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Create the store and the experiment if needed; return the experiment id."""
    import mlflow

    # A server given by MLFLOW_TRACKING_URI keeps its own artifact store; the local default keeps
    # artifacts beside the database. (Read before set_tracking_uri, which exports the variable.)
    local = not os.environ.get("MLFLOW_TRACKING_URI")
    with _store_lock():
        mlflow.set_tracking_uri(tracking_uri())
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        location = (Path.cwd() / ARTIFACTS_DIR).as_uri() if local else None
        return mlflow.create_experiment(experiment, artifact_location=location)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def tracked_run(name: str, experiment: str, tags: dict[str, Any], params: dict[str, Any]):
    """Start an MLflow run with tags and flattened params; yield it (`.info.run_id`)."""
    import mlflow

    experiment_id = init_tracking(experiment)
    tags = {**tags, "git_commit": git_commit()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})
        mlflow.log_params(flatten(params))
        yield run


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat
