"""Tracking: MLflow calls are retried, parallel jobs log every point, and an unreachable store
costs a job nothing but a warning and a list of what was not logged."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time

import pytest

from conftest import LAYOUT, layered
from live import JOBS, STEPS, log_steps
from shpeft.runs import RunFolder
from shpeft.steps import run_job
from shpeft.tracking import Tracker, TrackingConfig, init_tracking, tracked_run, tracking_uri

FAST = TrackingConfig(tries=3, backoff=0.01)


def failing(times: int, error: Exception):
    """A function that raises `error` its first `times` calls, then returns the call count."""
    calls = []

    def func():
        calls.append(1)
        if len(calls) <= times:
            raise error
        return len(calls)

    return func, calls


def test_transient_errors_are_retried():
    tracker = Tracker(FAST)
    func, calls = failing(2, sqlite3.OperationalError("database is locked"))
    assert tracker.call("metrics", func) == 3
    assert tracker.missing == [] and tracker.away is None


def test_persistent_errors_give_up_once_then_skip(caplog):
    tracker = Tracker(FAST)
    func, calls = failing(99, ConnectionRefusedError("refused"))
    assert tracker.call("params", func) is None and len(calls) == 3
    assert "params failed 3 times (ConnectionRefusedError: refused)" in caplog.text
    assert tracker.call("metrics step 1", func) is None and len(calls) == 3, "not tried again"
    assert tracker.missing == ["params", "metrics step 1"]


def test_rejected_calls_are_not_retried():
    from mlflow.exceptions import MlflowException

    tracker = Tracker(FAST)
    func, calls = failing(99, MlflowException.invalid_parameter_value("changed value"))
    assert tracker.call("params", func) is None and len(calls) == 1
    assert tracker.missing == ["params"] and tracker.away is None


@pytest.mark.slow
def test_parallel_jobs_log_every_point_to_sqlite(in_tmp):
    """16 processes share the default SQLite store (the workflow's parallel finetune jobs)."""
    from mlflow import MlflowClient

    # The store is created by a process of its own, as `shpeft tracking-init` does; the workers
    # are forked from a parent that never opened it.
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        pool.apply(init_tracking)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(JOBS) as pool:
        results = pool.map(log_steps, range(JOBS))
    print(f"{JOBS} jobs x {STEPS} steps: {time.perf_counter() - started:.1f} s")
    assert [missing for _, missing in results] == [[]] * JOBS
    client = MlflowClient(tracking_uri())
    for run_id, _ in results:
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in history) == list(range(1, STEPS + 1))


def test_finetune_without_a_reachable_server_writes_outputs(tiny_ready, in_tmp, monkeypatch):
    params = layered(in_tmp, "backbone: {weights: none}\ntracking: {tries: 2, backoff: 0.05}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run_job(params, "finetune", dataset="tiny_us", method="linear", seed=0)
    run = RunFolder(LAYOUT.run_dir("tiny_us", "linear", 0))
    assert run.metrics()["test"]["accuracy"] >= 0 and len(run.predictions()) == 30
    record = run.tracking()
    assert record["run_id"] is None and record["logged"] is False
    assert {"run", "params", "metrics step 1", "artifact metrics.json"} <= set(record["missing"])


def test_the_experiment_declares_its_kind_and_a_run_logs_its_dataset(in_tmp):
    """MLflow 3's UI opens an experiment of this kind on its runs, with the Dataset column."""
    from mlflow import MlflowClient

    data = {
        "arrays_sha256": {"images": "a" * 64, "labels": "b" * 64, "split": "c" * 64},
        "class_names": ["benign", "malignant"],
        "sizes": {"train": 8, "val": 2, "test": 2},
    }
    with tracked_run("run", {}, {}, experiment="kinds") as tracker:
        tracker.log_dataset("busi", data, "results/kinds/data/busi")
    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name("kinds")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (given,) = client.get_run(tracker.run_id).inputs.dataset_inputs
    assert given.dataset.name == "busi" and len(given.dataset.digest) == 16
    assert json.loads(given.dataset.profile) == data["sizes"]
    assert json.loads(given.dataset.source) == {"uri": "results/kinds/data/busi"}
    assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "training")]
    client.delete_experiment_tag(experiment.experiment_id, "mlflow.experimentKind")
    init_tracking("kinds")  # a store made before the kind was declared gains it
    kind = client.get_experiment_by_name("kinds").tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"
