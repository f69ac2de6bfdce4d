"""GPU slots: concurrent jobs each lock a distinct device and all finish."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from shpeft.train.devices import acquire_gpu, visible_gpus


def _job(lock_dir: str, log: str, index: int) -> None:
    os.environ["SHPEFT_NUM_GPUS"] = "2"
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    device = acquire_gpu(Path(lock_dir), poll=0.02)
    start = time.monotonic()
    time.sleep(0.2)
    visible = os.environ["CUDA_VISIBLE_DEVICES"]
    with open(log, "a") as handle:
        handle.write(json.dumps([index, device, visible, start, time.monotonic()]) + "\n")


def test_eight_jobs_on_two_devices_never_share_and_all_finish(tmp_path):
    log = tmp_path / "log.jsonl"
    context = multiprocessing.get_context("fork")
    jobs = [context.Process(target=_job, args=(str(tmp_path), str(log), i)) for i in range(8)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=60)
    assert all(job.exitcode == 0 for job in jobs)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r[0] for r in rows) == list(range(8))
    assert all(r[1] == r[2] and r[1] in ("0", "1") for r in rows)
    for device in ("0", "1"):
        spans = sorted((r[3], r[4]) for r in rows if r[1] == device)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_no_gpu_means_cpu(monkeypatch):
    monkeypatch.setenv("SHPEFT_NUM_GPUS", "0")
    assert visible_gpus() == [] and acquire_gpu() is None


def _try_device_zero(lock_dir: str, slurm_job: str, result) -> None:
    os.environ.update(SHPEFT_NUM_GPUS="1", SLURM_JOB_ID=slurm_job)
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        result.put(acquire_gpu(Path(lock_dir), poll=0.01, timeout=0.3))
    except TimeoutError:
        result.put("timeout")


def test_slurm_jobs_do_not_wait_for_each_others_device_zero(tmp_path):
    """On a cluster each SLURM job has its own device 0; a shared lock would serialise them.

    This process holds job 100's lock on device 0: another process of job 100 must wait for it,
    one of job 101 takes its own device 0 at once."""
    import fcntl

    (tmp_path / "slurm-100").mkdir()
    with open(tmp_path / "slurm-100" / "0.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        context = multiprocessing.get_context("fork")
        outcomes = {}
        for job in ("100", "101"):
            result = context.Queue()
            process = context.Process(target=_try_device_zero, args=(str(tmp_path), job, result))
            process.start()
            outcomes[job] = result.get(timeout=60)
            process.join(timeout=60)
    assert outcomes == {"100": "timeout", "101": "0"}
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {"slurm-100", "slurm-101"}


def test_a_gpu_torch_cannot_use_is_an_error_not_a_quiet_cpu(tmp_path, monkeypatch):
    """A driver that shows a GPU, with a torch build that cannot use it (as on this machine)."""
    import torch

    from shpeft.errors import ShpeftError
    from shpeft.train.devices import resolve_device

    if torch.cuda.is_available():
        pytest.skip("torch can use the GPU here: nothing to refuse")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 470.57.02\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(ShpeftError, match=r"driver 470\.57\.02 shows a GPU, but torch .* cannot"):
        resolve_device("auto")
    assert resolve_device("cpu").type == "cpu"  # the explicit way to train on the CPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert resolve_device("auto").type == "cpu"  # GPUs hidden on purpose


def test_scoring_and_pretraining_follow_the_finetune_device_and_determinism(
    tiny_ready, in_tmp, monkeypatch
):
    """They compute on the device too: `device: cpu` must reach them, and `deterministic`."""
    import torch

    from conftest import layered
    from shpeft import dag
    from shpeft.steps import run_job
    from shpeft.train import devices

    for name in ("backbone", "score"):
        assert dag.STEPS[name].reads["device"] == "finetune.device"
        assert dag.STEPS[name].reads["deterministic"] == "finetune.deterministic"
    asked = []
    monkeypatch.setattr(devices, "seed_everything", lambda seed, strict: asked.append(strict))
    monkeypatch.setattr(
        devices, "resolve_device", lambda name: asked.append(name) or torch.device("cpu")
    )
    strict = layered(in_tmp, "finetune: {device: cpu, deterministic: true}\n")
    run_job(strict, "backbone")  # the tiny params pretrain their backbone (`weights: pretrain`)
    assert asked == [True, "cpu"]
    run_job(strict, "score", dataset="tiny_us", seed=0)
    assert asked == [True, "cpu"] * 2
