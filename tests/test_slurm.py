"""The tiny grid submitted to a real SLURM cluster through profiles/slurm (`make slurm-test`).

A single-node cluster is started in a scratch folder (tests/slurm_cluster.py); the test skips,
with the reason, where the daemons are not installed or cannot run. The grid is `served_grid`'s,
logging to the same MLflow server. One finetune job is cancelled with `scancel` while it runs: the
rest of the grid finishes (`--keep-going`), the next invocation plans that job and what gathers it
(nothing else), and after it the summary equals the local run's, number for number.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from commands import BIN, job_stats, run
from conftest import GRID_CORES, LAYOUT, SERVED_GRID, use_tiny_params
from shpeft import dag, paths
from slurm_cluster import cluster, unavailable

REASON = unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def _local_threads() -> list[str]:
    """Each rule's threads as a local `--cores 2` run gives them: the cluster run must use the
    same, since CPU results depend on the thread count."""
    return [f"{s.name}={min(s.threads or GRID_CORES, GRID_CORES)}" for s in dag.STEPS.values()]


def _slurm_command(*extra: str) -> list[str]:
    return [
        "snakemake",
        "--workflow-profile",
        "profiles/slurm",
        "--set-threads",
        *_local_threads(),
        # No accounting database on the test cluster: job states come from squeue, and no
        # account is guessed from sacct.
        "--slurm-no-account",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        "--latency-wait",
        "5",
        *extra,
    ]


def _cancel_when_running(env: dict, comment: str, runner: subprocess.Popen, output: Path) -> str:
    """scancel the SLURM job whose comment is `comment` once it runs; its job id."""
    end = time.monotonic() + 900
    while time.monotonic() < end and runner.poll() is None:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True, env=env
        ).stdout
        for line in queue.splitlines():
            job, state, job_comment = line.split("|", 2)
            if job_comment == comment and state == "RUNNING":
                # Its imports alone take seconds: it is cancelled before it can finish.
                subprocess.run(["scancel", job], env=env, check=True)
                return job
        time.sleep(0.5)
    raise AssertionError(f"no running job with comment {comment!r}\n{output.read_text()[-6000:]}")


def _planned(cwd: Path, env: dict) -> list[str]:
    """The rules a dry run of the cluster command would submit jobs of."""
    return sorted(job_stats(run(*_slurm_command("--dry-run"), cwd=cwd, env=env).stdout))


def test_the_tiny_grid_on_a_real_slurm_cluster(served_grid, project, tmp_path):
    local, url = served_grid
    # The served grid under another experiment name: its own runs on the server, the same numbers.
    use_tiny_params(project, SERVED_GRID % url + "experiment: tiny-slurm\n")
    output = tmp_path / "snakemake.out"  # read once it ends (a pipe could fill and block it)
    with cluster(tmp_path / "cluster") as env, output.open("w") as out:
        started = time.monotonic()
        runner = subprocess.Popen(
            _slurm_command("--keep-going"),
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "PATH": f"{BIN}:{env['PATH']}"},
        )
        try:
            comment = "rule_finetune_wildcards_" + "_".join(["tiny_us", "sh-peft", "0"])
            job = _cancel_when_running(env, comment, runner, output)
            runner.wait(timeout=1800)
        finally:
            runner.kill()
        log = output.read_text()
        assert runner.returncode != 0, log[-3000:]
        assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in log, log[-3000:]
        first_s = time.monotonic() - started
        # Everything else finished; the cancelled job and the steps that gather it remain.
        rules = _planned(project, env)
        assert rules == ["aggregate", "all", "figures", "finetune", "report"]
        finetunes = run(*_slurm_command("--dry-run"), cwd=project, env=env).stdout
        assert re.findall(r"wildcards: (dataset=\S+, method=\S+, seed=\d+)", finetunes) == [
            "dataset=tiny_us, method=sh-peft, seed=0"
        ]
        started = time.monotonic()
        run(*_slurm_command(), cwd=project, env=env)
        rerun_s = time.monotonic() - started
    cluster_summary = pd.read_csv(project / paths.layout("tiny-slurm").table("summary.csv"))
    local_summary = pd.read_csv(local / LAYOUT.table("summary.csv"))
    pd.testing.assert_frame_equal(cluster_summary, local_summary, check_exact=True)
    print(f"cluster: the grid with one job cancelled {first_s:.0f} s, its rerun {rerun_s:.0f} s")
