"""Against real components: an `mlflow server` that a lab shares, and its UI and the HTML report
in a headless browser (skipped, with the reason, where no browser is installed)."""

from __future__ import annotations

import functools
import json
import multiprocessing

import pandas as pd
import pytest
from PIL import Image

from conftest import LAYOUT
from live import (
    JOBS,
    NO_BROWSER,
    chrome,
    log_steps,
    mlflow_server,
    open_page,
    screenshot,
    wait_for_text,
)
from shpeft.analysis.report import html
from shpeft.params import load
from shpeft.runs import RunFolder
from shpeft.tracking import runs_page

POINTS = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server for this module's tests (starting one takes 15 to 25 s)."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.mark.slow
def test_many_writers_through_a_server_lose_no_point(server, in_tmp, monkeypatch):
    """16 jobs log 100 points each through the REST API (one request a point); every point is
    read back."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    # Forked from a parent that never opened a connection to the server; the first job creates
    # the experiment, under the store lock.
    with multiprocessing.get_context("fork").Pool(JOBS) as pool:
        results = pool.map(functools.partial(log_steps, steps=POINTS), range(JOBS))
    assert [missing for _, missing in results] == [[]] * JOBS
    client = MlflowClient(server)
    for run_id, _ in results:
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.step for m in history) == list(range(1, POINTS + 1))


@pytest.mark.slow
def test_the_tiny_grid_logs_every_run_to_a_server(served_grid):
    """Every job that logs has its run on the server, read back through the REST client with
    what its files say: finetune runs with their dataset, trained part, config and per-epoch
    metrics; score and mask runs with their summaries; one grid run with the tables, figures
    and report."""
    from mlflow import MlflowClient

    project, url = served_grid
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    assert all(r.info.status == "FINISHED" for r in runs)
    by_step = {}
    for run in runs:
        by_step.setdefault(run.data.tags["step"], []).append(run)
    params = load([project / "params.yaml"])
    variants = sorted(params.masks)
    assert sorted(by_step) == ["finetune", "mask", "report", "score"]
    assert sorted(r.data.tags["variant"] for r in by_step["mask"]) == variants
    for run in by_step["finetune"]:
        tags = run.data.tags
        folder = RunFolder(project / LAYOUT.run_dir(tags["dataset"], tags["method"], tags["seed"]))
        assert folder.tracking()["run_id"] == run.info.run_id and folder.tracking()["logged"]
        config, metrics = folder.config(), folder.metrics()
        assert tags["backbone_sha256"] == config["backbone"]["sha256"]
        assert run.data.metrics["test_accuracy"] == metrics["test"]["accuracy"]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, params.finetune.epochs + 1))
        (dataset,) = run.inputs.dataset_inputs
        assert dataset.dataset.name == "tiny_us" and dataset.tags[0].value == "training"
        logged = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "metrics.json", "history.csv", "trained"} <= logged
        (trained,) = client.list_artifacts(run.info.run_id, "trained")  # the method's file
        assert trained.file_size == folder.file(trained.path.split("/")[-1]).stat().st_size
        if tags["method"] == "sh-peft":  # the mask it trained on, and its statistics
            mask = config["mask"]
            assert run.data.params["mask.k"] == str(mask["k"]) > "0"
            assert float(run.data.params["mask.stats.built.rho"]) == mask["stats"]["built"]["rho"]
    for run in by_step["mask"]:
        stats = json.loads(
            (project / LAYOUT.mask_stats("tiny_us", run.data.tags["variant"], 0)).read_text()
        )
        assert run.data.metrics["k"] == stats["k"] and run.data.params["mask.budget"]
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == [
            f"{run.data.tags['variant']}.json"
        ]
    (score,) = by_step["score"]
    assert "summary.json" in {a.path for a in client.list_artifacts(score.info.run_id)}
    (grid,) = by_step["report"]
    logged = {
        folder: {a.path.split("/")[-1] for a in client.list_artifacts(grid.info.run_id, folder)}
        for folder in ("tables", "figures", "report")
    }
    assert "summary.csv" in logged["tables"] and "report.html" in logged["report"]
    assert "accuracy_by_method.png" in logged["figures"]
    summary = pd.read_csv(project / LAYOUT.table("summary.csv"), dtype={"seed": str})
    mean = summary[(summary["seed"] == "mean") & (summary["method"] == "sh-peft")].iloc[0]
    assert grid.data.metrics["tiny_us.sh-peft.accuracy"] == mean["accuracy"]


@pytest.mark.slow
def test_the_mlflow_ui_opens_on_the_runs_table_with_the_dataset_column(served_grid):
    """The page `make mlflow-ui` prints, on the served grid's runs, in a real browser."""
    from mlflow import MlflowClient

    _, url = served_grid
    experiment = MlflowClient(url).get_experiment_by_name("tiny")
    session = chrome()
    try:
        session.get(runs_page(url, experiment.experiment_id))
        text = wait_for_text(session, "tiny_us-sh-peft-s0")
        screenshot(session, "mlflow-runs")
    finally:
        session.quit()
    assert "Run Name" in text and "Dataset" in text and "tiny_us-linear-s0" in text
    assert text.count("tiny_us (") == 2 and "Training" in text  # each finetune run's dataset
    assert "No data available" not in text  # not the GenAI overview


COLOURS = ("red", "green", "blue")


def _figure(path, colour):
    Image.new("RGB", (300, 200), colour).save(path)
    return path


def test_the_html_report_shows_every_figure_without_console_errors(tmp_path):
    if NO_BROWSER:
        pytest.skip(NO_BROWSER)
    figures = {f"figure {i}": _figure(tmp_path / f"{i}.png", c) for i, c in enumerate(COLOURS)}
    table = "# Report\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    (tmp_path / "report.html").write_text(html(table, figures))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "broken.html").write_text(html(table, {**figures, "broken": tmp_path / "bad.png"}))
    loaded, errors = open_page(tmp_path / "report.html", "report-figures")
    assert loaded == dict.fromkeys(figures, True) and errors == []
    loaded, _ = open_page(tmp_path / "broken.html", "report-broken")
    assert loaded["broken"] is False and loaded["figure 0"] is True  # the check can fail
