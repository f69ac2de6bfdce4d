"""GPU slots: concurrent jobs each lock a distinct device and all finish."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

from shpeft.devices import acquire_gpu, visible_gpus


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


def test_slurm_jobs_do_not_wait_for_each_others_device_zero(tmp_path, monkeypatch):
    """On a cluster each SLURM job has its own device 0; a shared lock would serialise them."""
    log = tmp_path / "log.jsonl"
    context = multiprocessing.get_context("fork")
    jobs = []
    for index in range(2):
        monkeypatch.setenv("SLURM_JOB_ID", str(100 + index))
        jobs.append(context.Process(target=_job, args=(str(tmp_path), str(log), index)))
        jobs[-1].start()
    for job in jobs:
        job.join(timeout=60)
    assert all(job.exitcode == 0 for job in jobs)
    (_, a, _, a0, a1), (_, b, _, b0, b1) = sorted(
        json.loads(line) for line in log.read_text().splitlines()
    )
    assert a == b == "0" and a0 < b1 and b0 < a1  # both held device 0 at the same time
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {"slurm-100", "slurm-101"}
