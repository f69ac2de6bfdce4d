"""Crashes: a killed finetune job resumes and ends as if never stopped; killed writes leave no
output; a diverging run stops with one clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import LAYOUT, ROOT, TINY
from shpeft import paths
from shpeft.cli import main
from shpeft.fileio import read_json, write_text
from shpeft.tracking import tracking_uri

# Enough training images that an epoch takes about a second: the test kills the job between
# epochs without racing it. LoRA dropout makes the global torch RNG matter too. On the CPU, a
# resumed run is bit for bit the uninterrupted one (CUDA kernels need not be deterministic).
OVERLAY = """
datasets:
  tiny_us: {n_train: 1200}
backbone: {weights: none}
finetune: {epochs: 4, batch_size: 8, device: cpu}
methods:
  lora: {dropout: 0.1}
"""
JOB = ["finetune", "--dataset", "tiny_us", "--method", "lora", "--seed", "0"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One torch thread here and in subprocesses: same numerics, no oversubscribed cores."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def prepared(in_tmp) -> list[str]:
    """Prepared data and backbone in a scratch project; the `--params` arguments to use."""
    (in_tmp / "overlay.yaml").write_text(OVERLAY)
    params = ["--params", str(ROOT / "params.yaml"), "--params", str(TINY)]
    params += ["--params", "overlay.yaml"]
    assert main(["prepare", "--dataset", "tiny_us", *params]) == 0
    assert main(["backbone", *params]) == 0
    return params


def _shpeft(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "shpeft.cli", *argv]


def test_killed_job_resumes_with_identical_outputs(prepared, in_tmp):
    run = LAYOUT.run_dir("tiny_us", "lora", 0)
    state = paths.checkpoint_file(run)
    assert main([*JOB, *prepared]) == 0
    assert not state.exists(), "a finished job deletes its checkpoint"
    os.rename(run, in_tmp / "reference")

    job = subprocess.Popen(_shpeft([*JOB, *prepared]), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not state.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    saved = torch.load(state, weights_only=True)
    assert 1 <= saved["epoch"] < 4
    assert not run.exists() and not list((in_tmp / LAYOUT.root).rglob("metrics.json"))

    resumed = subprocess.run(_shpeft([*JOB, *prepared]), capture_output=True, text=True, check=True)
    assert f"resuming after epoch {saved['epoch']}/4" in resumed.stderr
    assert "continuing run" in resumed.stderr
    assert not state.exists()
    for name in ("metrics.json", "predictions.csv"):
        assert (run / name).read_bytes() == (in_tmp / "reference" / name).read_bytes(), name
    pd.testing.assert_frame_equal(
        pd.read_csv(run / "history.csv").drop(columns="seconds"),
        pd.read_csv(in_tmp / "reference" / "history.csv").drop(columns="seconds"),
        check_exact=True,
    )

    from mlflow import MlflowClient

    run_id = read_json(run / "mlflow.json")["run_id"]
    assert run_id == saved["meta"]["mlflow_run_id"], "the resumed job continues its MLflow run"
    client = MlflowClient(tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    history = client.get_metric_history(run_id, "val_accuracy")
    assert {m.step for m in history} == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("write", "warning"),
    [
        (lambda f: torch.save({"fingerprint": "other", "meta": {}}, f), "another configuration"),
        (lambda f: f.write_bytes(b"not a state"), "cannot be read (UnpicklingError)"),
    ],
)
def test_foreign_or_unreadable_state_is_not_resumed(prepared, in_tmp, caplog, write, warning):
    state = paths.checkpoint_file(LAYOUT.run_dir("tiny_us", "lora", 0))
    state.parent.mkdir(parents=True)
    write(state)
    (in_tmp / "short.yaml").write_text("finetune: {epochs: 1}\n")
    assert main([*JOB, *prepared, "--params", "short.yaml"]) == 0
    assert warning in caplog.text and "deleted" in caplog.text
    assert "resuming" not in caplog.text and not state.exists()


def test_diverging_run_stops_with_one_line_and_no_outputs(prepared, in_tmp, caplog):
    (in_tmp / "diverge.yaml").write_text("finetune: {lr: 1.0e+30}\n")
    assert main([*JOB, *prepared, "--params", "diverge.yaml"]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "training diverged: loss is nan at epoch" in errors[0]
    assert "lower lr" in errors[0]
    assert not (in_tmp / LAYOUT.runs_root()).exists()


def test_killed_atomic_write_leaves_no_output(tmp_path):
    """SIGKILL in the middle of a write: the target does not exist, only a hidden temporary
    sibling does, and the next write of the same path removes it (its writer is gone)."""
    target = tmp_path / "out"
    writer = f"""
import time
from shpeft.fileio import atomic_path
with atomic_path({str(target)!r}) as tmp:
    tmp.mkdir()
    (tmp / "part.bin").write_bytes(b"x" * 50_000_000)
    print("writing", flush=True)
    time.sleep(60)
"""
    job = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert job.stdout.readline().strip() == "writing"
    job.send_signal(signal.SIGKILL)
    job.wait()
    job.stdout.close()
    assert not target.exists()
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".out.") and leftover.name.endswith(".tmp")
    live = tmp_path / f".out.{socket.gethostname()}-{os.getpid()}.x.tmp"  # a writer still running
    live.mkdir()
    write_text(target, "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]


def test_a_requeued_job_resumes_on_another_node_but_not_on_another_device():
    from shpeft.steps.finetune import fingerprint

    resolved = {"finetune": {"lr": 0.1}, "device": "cuda", "machine": {"host": "node1"}}
    other_node = resolved | {"machine": {"host": "node7"}}
    other_device = resolved | {"device": "cpu"}
    assert fingerprint(resolved, {}) == fingerprint(other_node, {})
    assert fingerprint(resolved, {}) != fingerprint(other_device, {})
