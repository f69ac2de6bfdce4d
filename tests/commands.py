"""The project's commands (snakemake, dvc, mlflow) run from tests as a user runs them: the
environment's own first on PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """`args` in `cwd` with `env` (default: this process's); with `check`, a failure is an
    AssertionError holding the tail of its output."""
    base = os.environ if env is None else env
    result = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, "PATH": f"{BIN}:{base['PATH']}"},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def job_stats(out: str) -> dict[str, int]:
    """Rule -> job count in a Snakemake run's output (empty when it had nothing to do)."""
    stats = out.split("Job stats:")[-1] if "Job stats:" in out else ""
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"
    }
