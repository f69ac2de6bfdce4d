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


def environment() -> dict[str, Any]:
    """Machine, accelerator and every installed package's version."""
    import torch

    from shpeft.train.devices import nvidia_driver

    env: dict[str, Any] = {
        "os": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda (torch build)": torch.version.cuda or "none",
        "gpu": "none",
    }
    if torch.cuda.is_available():
        env["gpu"] = ", ".join(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        )
        env["gpu driver"] = nvidia_driver() or "unknown"
    packages = sorted(
        {(d.metadata["Name"] or "?").lower(): d.version for d in distributions()}.items()
    )
    return {**env, "packages": dict(packages)}
