"""MLflow tracking: a run per finetune, score, mask and study job (and their sweep kin) and one per
report (the grid's tables, figures and report), in a store created once before jobs run in
parallel.

The default store is an SQLite database at the project root (an absolute `sqlite:///` URI, so
every job finds it whatever its working directory); `tracking.uri` in the params, or
`MLFLOW_TRACKING_URI` above it, points the grid at a team's `mlflow server`. Where and how a job
logs is set once per command (`configure`), not read by the steps: it changes none of a job's
outputs, so pointing a finished grid at a server reruns only the report (which reads every
param). Creating a fresh SQLite store runs
schema migrations; concurrent first writes would corrupt it, so creation is serialised by a file
lock and also done up front by the workflow (`shpeft tracking-init`).

Tracking never stops a job: every call to the store is retried with exponential backoff (an
SQLite database locked by parallel jobs, a server restarting). If the store stays unreachable the
job still writes all its outputs, warns, and lists what was not logged in its `mlflow.json`.
MLflow's own HTTP retries (minutes) are off unless `MLFLOW_HTTP_REQUEST_MAX_RETRIES` is set.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from math import isfinite
from pathlib import Path
from typing import Any

from pydantic import Field

from shpeft.config import Section
from shpeft.provenance import git_commit

log = logging.getLogger(__name__)

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
DEFAULT_EXPERIMENT = "shpeft"
#: Declares the experiment's kind, so that MLflow 3's UI opens it on its runs table (an
#: experiment without it opens on the overview of GenAI traces).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


class TrackingConfig(Section):
    """MLflow: where the runs go and how hard a job tries to reach the store (the runs go into the
    MLflow experiment named by the params' `experiment`)."""

    uri: str | None = None
    """The tracking server or store, e.g. `http://mlflow.lab:5000`; `MLFLOW_TRACKING_URI` wins
    over it. Unset: `mlflow.db` at the project root."""
    tries: int = Field(5, ge=1)
    """Tries of each call to the store; once one call fails them all, the store counts as away
    and the job's later calls are skipped, so tracking delays a job by one round at most."""
    backoff: float = Field(0.5, ge=0)
    """Seconds before the second try, doubled before each next one (with jitter)."""


#: Where and how this process logs (`configure`), and the URI it exported, if it did.
_current: dict[str, Any] = {"cfg": TrackingConfig(), "experiment": DEFAULT_EXPERIMENT}


def configure(cfg: TrackingConfig, experiment: str) -> None:
    """Log this process's runs as `cfg` says, into `experiment`: set once per command from its
    params. `cfg.uri` is exported as `MLFLOW_TRACKING_URI` (unless that is set), so that MLflow
    itself and any child process log to the same store."""
    if _current.get("exported") and os.environ.get("MLFLOW_TRACKING_URI") == _current["exported"]:
        del os.environ["MLFLOW_TRACKING_URI"]  # an earlier configure's, not the user's
    _current.update(cfg=cfg, experiment=experiment, exported=None)
    if cfg.uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = _current["exported"] = cfg.uri


def runs_page(ui: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs table. MLflow 3.17's UI picks its views from
    a workflow switch (default: GenAI traces), not from the experiment's kind: the page says."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


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
            for key, value in EXPERIMENT_KIND.items():  # stores made before the kind was declared
                if key not in found.tags:
                    mlflow.MlflowClient().set_experiment_tag(found.experiment_id, key, value)
            return found.experiment_id
        location = (Path.cwd() / ARTIFACTS_DIR).as_uri() if local else None
        return mlflow.create_experiment(
            experiment, artifact_location=location, tags=EXPERIMENT_KIND
        )


def _permanent(exc: Exception) -> bool:
    """A request the store rejected (bad value, unknown run): trying again cannot help."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    status = exc.get_http_status_code()
    return 400 <= status < 500 and status != 429


class Tracker:
    """One MLflow run, logged to through retried calls; `missing` lists what was not logged."""

    def __init__(self, cfg: TrackingConfig, experiment: str = DEFAULT_EXPERIMENT) -> None:
        self.cfg, self.experiment = cfg, experiment
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        #: True when an earlier attempt's run (given to `start`) was found and continued.
        self.continued = False
        self.missing: list[str] = []
        self.away: str | None = None
        self._client: Any = None
        self._jitter = random.Random()  # not the global RNG: training's stream stays untouched

    def call(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`func(*args, **kwargs)` with retries; None, with `what` recorded, if it fails."""
        if self.away is None:
            for attempt in range(1, self.cfg.tries + 1):
                try:
                    return func(*args, **kwargs)
                except Exception as exc:  # locked, refused, 5xx...: tracking must not end the job
                    error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    if _permanent(exc):
                        log.warning("MLflow: %s not logged (%s)", what, error)
                        self.missing.append(what)
                        return None
                    if attempt < self.cfg.tries:
                        delay = self.cfg.backoff * 2 ** (attempt - 1)
                        log.debug("MLflow: %s failed (%s); retrying", what, error)
                        time.sleep(delay * self._jitter.uniform(0.5, 1.5))
            self.away = error
            log.warning(
                "MLflow: %s failed %d times (%s); not logging to %s for the rest of this job",
                what,
                self.cfg.tries,
                error,
                tracking_uri(),
            )
        self.missing.append(what)
        return None

    def start(
        self, name: str, tags: dict[str, Any], params: dict[str, Any], run_id: str | None = None
    ) -> None:
        """Continue run `run_id` if the store still has it, else create a run; log tags, params."""
        from mlflow.entities import Param, RunTag

        # MLflow retries HTTP requests itself, for minutes; by default our backoff is the one.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        self.experiment_id = self.call("experiment", self._open)
        if self.experiment_id is None:
            self.missing.extend(["run", "params"])
            return
        tags = {k: str(v) for k, v in {**tags, "git_commit": git_commit()}.items() if v is not None}
        if os.environ.get("DVC_EXP_NAME"):
            tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
        if run_id is not None and self.call("continue run", self._continue, run_id):
            self.run_id, self.continued = run_id, True
            self._log_batch("tags", tags=[RunTag(k, v) for k, v in tags.items()])
        else:
            self.run_id = self.call("run", self._create, name, tags)
        self._log_batch("params", params=[Param(k, v) for k, v in flatten(params).items()])

    def _open(self) -> str:
        from mlflow import MlflowClient

        experiment_id = init_tracking(self.experiment)
        self._client = MlflowClient(tracking_uri())
        return experiment_id

    def _create(self, name: str, tags: dict[str, str]) -> str:
        from mlflow.tracking.context.registry import resolve_tags

        # resolve_tags adds what `mlflow.start_run` would: user, source, its git commit.
        run = self._client.create_run(self.experiment_id, run_name=name, tags=resolve_tags(tags))
        return run.info.run_id

    def _continue(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self._client.get_run(run_id)
        except MlflowException as exc:
            if _permanent(exc):
                return False
            raise
        if run.info.experiment_id != self.experiment_id or run.info.lifecycle_stage != "active":
            return False
        self._client.update_run(run_id, status="RUNNING")
        log.info("MLflow: continuing run %s", run_id)
        return True

    def _log_batch(self, what: str, **batch: Any) -> None:
        if self.run_id is None:
            self.missing.append(what)
            return
        self.call(what, self._client.log_batch, self.run_id, **batch)

    def log_dataset(self, name: str, data: dict[str, Any], source: str) -> None:
        """Log the prepared dataset the run trained on as its input (MLflow's Dataset column):
        a digest of its arrays' sha256, its classes and its split sizes."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        hashes = "".join(data["arrays_sha256"][key] for key in sorted(data["arrays_sha256"]))
        dataset = Dataset(
            name=name,
            digest=hashlib.sha256(hashes.encode()).hexdigest()[:16],
            source_type="local",
            source=json.dumps({"uri": source}),
            schema=json.dumps({"classes": data["class_names"]}),
            profile=json.dumps(data["sizes"]),
        )
        context = [InputTag("mlflow.data.context", "training")]
        if self.run_id is None:
            self.missing.append("dataset")
            return
        self.call("dataset", self._client.log_inputs, self.run_id, [DatasetInput(dataset, context)])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        points = [Metric(k, float(v), stamp, step or 0) for k, v in metrics.items()]
        self._log_batch("metrics" if step is None else f"metrics step {step}", metrics=points)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        """Log a file, or a folder's files, under `folder` of the run's artifacts."""
        what = f"artifact {Path(path).name}"
        if self.run_id is None:
            self.missing.append(what)
            return
        log = self._client.log_artifacts if Path(path).is_dir() else self._client.log_artifact
        self.call(what, log, self.run_id, str(path), folder)

    def end(self, status: str) -> None:
        if self.run_id is not None:
            self.call("run status", self._client.set_terminated, self.run_id, status)
        if self.missing:
            log.warning("MLflow: not logged to %s: %s", tracking_uri(), ", ".join(self.missing))

    def record(self) -> dict[str, Any]:
        """What the run directory keeps about tracking (`mlflow.json`)."""
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": tracking_uri(),
            "logged": not self.missing,
            "missing": self.missing,
        }


@contextlib.contextmanager
def tracked_run(
    name: str,
    tags: dict[str, Any],
    params: dict[str, Any],
    run_id: str | None = None,
    experiment: str | None = None,
) -> Iterator[Tracker]:
    """Start (or continue `run_id`, an earlier attempt's) run in `experiment` (default: the one
    `configure` set); end it FINISHED or FAILED."""
    tracker = Tracker(_current["cfg"], experiment or _current["experiment"])
    tracker.start(name, tags, params, run_id)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        tracker.end(status)


#: Characters MLflow refuses in a param name (one refused name loses the whole batch).
MLFLOW_UNSAFE = re.compile(r"[^\w\-. :/]")


def log_job(
    name: str,
    tags: dict[str, Any],
    params: dict[str, Any],
    result: dict[str, Any],
    files: list[Path],
) -> None:
    """One run for a finished job that does not train (a score or mask job): its config as
    params, the numbers of its result as metrics, `files` (its small outputs) as artifacts."""
    with tracked_run(name, tags, params) as tracker:
        tracker.log_metrics(numbers(result))
        for file in files:
            tracker.log_artifact(file)


def numbers(data: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a nested result, by dotted key (flags and texts left out)."""
    return {
        name: float(value)
        for name, value in _leaves(data)
        if isinstance(value, int | float) and not isinstance(value, bool) and isfinite(value)
    }


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    return {name: str(value)[:6000] for name, value in _leaves(data, prefix)}


def _leaves(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Each leaf of a nested dict by its dotted key, made safe for MLflow."""
    for key, value in data.items():
        name = MLFLOW_UNSAFE.sub("_", f"{prefix}{key}")
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{name}.")
        else:
            yield name, value
