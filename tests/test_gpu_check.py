"""`make gpu-check`: without CUDA it checks nothing and says so with its own exit status; its
device-overlap check reads the jobs' logs as the workflow writes them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shpeft.bench.gpu_check import NO_CUDA, device_overlaps, job_logs
from shpeft.cli import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: gpu-check runs")
def test_without_cuda_gpu_check_exits_with_its_own_status(in_tmp, capsys):
    assert main(["gpu-check"]) == NO_CUDA
    assert "sees no CUDA device; nothing was checked" in capsys.readouterr().out
    assert not (in_tmp / "results").exists()


def _log(folder: Path, name: str, gpu: str, start: str, end: str) -> Path:
    """A job's log where the workflow puts it: `logs/<step>/<wildcards...>.log`."""
    path = folder / "logs" / "finetune" / "tiny_us" / name / "0.log"
    path.parent.mkdir(parents=True)
    path.write_text(
        f"2026-01-01 10:{start},000 shpeft.train.devices INFO using GPU {gpu}\n"
        f"2026-01-01 10:{end},500 shpeft.steps.finetune INFO done\n"
    )
    return path


def test_jobs_that_ran_together_on_one_device_are_found(tmp_path):
    logs = [
        _log(tmp_path, "a", "0", "00:00", "00:10"),
        _log(tmp_path, "b", "1", "00:05", "00:15"),  # beside a, on another device
        _log(tmp_path, "c", "0", "00:11", "00:20"),  # after a, on its device; beside b
    ]
    assert job_logs(tmp_path) == sorted(logs)
    apart = device_overlaps(logs)
    assert apart["passed"] and apart["overlapping_pairs"] == 2
    assert apart["devices_used"] == ["0", "1"]
    logs.append(_log(tmp_path, "d", "1", "00:14", "00:16"))  # with b (and c) on device 1
    clash = device_overlaps(logs)
    assert not clash["passed"]
    assert clash["same_device_overlaps"] == [(str(logs[1]), str(logs[3]))]
    no_gpu = tmp_path / "cpu.log"  # no GPU line
    no_gpu.write_text("2026-01-01 10:00:00,000 shpeft INFO on the CPU\n")
    assert not device_overlaps([no_gpu])["passed"]  # nothing held a GPU: nothing was shown


def test_no_cuda_is_not_the_status_of_a_failed_check():
    assert NO_CUDA not in (0, 1)
