"""Where a result came from: the git commit, the machine, and the versions of what ran."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import distributions, version
from typing import Any


def git(*args: str) -> str | None:
    """The output of a git command in the working directory, or None outside a checkout."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def git_commit() -> str | None:
    return git("rev-parse", "HEAD")


def versions() -> dict[str, str]:
    """Python's and the key packages' versions, as each run records them."""
    from shpeft import __version__

    packages = ("torch", "timm", "numpy", "mlflow", "safetensors")
    return {
        "python": platform.python_version(),
        "shpeft": __version__,
        **{name: version(name) for name in packages},
    }


def machine() -> dict[str, Any]:
    """What a job computes on (each run records it: the report reads where training ran from
    the runs, not from the machine that writes the report)."""
    import torch

    from shpeft.train.devices import nvidia_driver

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": ", ".join(gpus) or "none",
        "gpu_driver": (nvidia_driver() or "unknown") if gpus else "none",
        "cuda_build": torch.version.cuda or "none",
        "torch": torch.__version__,
    }


def environment() -> dict[str, Any]:
    """Machine, accelerator and every installed package's version."""
    env: dict[str, Any] = {
        "os": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **machine(),
    }
    packages = sorted(
        {(d.metadata["Name"] or "?").lower(): d.version for d in distributions()}.items()
    )
    return {**env, "packages": dict(packages)}
