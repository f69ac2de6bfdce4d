"""Against real components: an `mlflow server` that a lab shares, and its UI and the HTML report
in a headless browser (skipped, with the reason, where no browser is installed)."""

from __future__ import annotations

import functools
import multiprocessing

import pytest
from PIL import Image

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
from shpeft.tracking import TrackingConfig, runs_page, tracked_run

POINTS = 100
DATA = {
    "arrays_sha256": {"images": "a" * 64, "labels": "b" * 64, "split": "c" * 64},
    "class_names": ["benign", "malignant"],
    "sizes": {"train": 8, "val": 2, "test": 2},
}


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
def test_the_mlflow_ui_opens_on_the_runs_table_with_the_dataset_column(server, in_tmp, monkeypatch):
    session = chrome()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
        for seed in (0, 1):
            tags = {"dataset": "busi", "method": "sh-peft", "seed": seed}
            with tracked_run(f"busi-sh-peft-s{seed}", tags, {}, TrackingConfig(), "ui") as run:
                run.log_dataset("busi", DATA, "results/ui/data/busi")
                run.log_metrics({"test_accuracy": 0.5 + seed / 10})
        session.get(runs_page(server, run.experiment_id))  # what `make mlflow-ui` prints
        text = wait_for_text(session, "busi-sh-peft-s0")
        screenshot(session, "mlflow-runs")
    finally:
        session.quit()
    assert "Run Name" in text and "Dataset" in text and "busi-sh-peft-s1" in text
    assert text.count("busi (") == 2 and "Training" in text  # each run's dataset and context
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
