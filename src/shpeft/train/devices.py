"""Devices and seeds: which device a job trains on, and handing GPUs to parallel jobs.

Snakemake counts `gpu` resources but does not say which device to use.
A job takes the first free device by locking `.shpeft/gpu-locks/<id>.lock` (held until the process
ends, released by the OS even if it is killed) and sets `CUDA_VISIBLE_DEVICES` before CUDA
starts. Inside a SLURM job the locks are the job's own: SLURM gives every job its devices (each
often numbered 0), so jobs on a cluster must not wait for each other's lock files on the shared
filesystem. Without a GPU the job runs on the CPU. `SHPEFT_NUM_GPUS` overrides the device count
(for tests on machines without GPUs).
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from shpeft.errors import ShpeftError

log = logging.getLogger(__name__)

LOCK_DIR = Path(".shpeft") / "gpu-locks"
_held: list[IO] = []


def visible_gpus() -> list[str]:
    """Device ids this process may use, without initialising CUDA."""
    if "SHPEFT_NUM_GPUS" in os.environ:
        return [str(i) for i in range(int(os.environ["SHPEFT_NUM_GPUS"]))]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [d for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def acquire_gpu(
    lock_dir: Path = LOCK_DIR, poll: float = 0.5, timeout: float = 24 * 3600
) -> str | None:
    """Lock a free device and make it the only visible one; None when there is no GPU."""
    devices = visible_gpus()
    if not devices:
        return None
    if "SLURM_JOB_ID" in os.environ:
        lock_dir = lock_dir / f"slurm-{os.environ['SLURM_JOB_ID']}"
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        for device in devices:
            handle = open(lock_dir / f"{device}.lock", "w")  # noqa: SIM115 (held for the job's life)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.write(str(os.getpid()))
            handle.flush()
            _held.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = device
            log.info("using GPU %s", device)
            return device
        if time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU among {devices} after {timeout:.0f} s")
        time.sleep(poll)


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when torch can use a GPU, the CPU where there is none; a GPU that the driver
    shows but torch cannot use is an error, not a quiet fall back to the CPU (`cpu` asks for it)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        refuse_unusable_gpu()
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ShpeftError("device: 'cuda' requested but torch sees no usable CUDA device")
    return torch.device(name)


def refuse_unusable_gpu() -> None:
    """Stop when an NVIDIA driver shows a GPU this torch build cannot use (a driver older than
    its CUDA needs, or a CPU-only build), unless the GPUs are hidden on purpose."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return
    driver = nvidia_driver()
    if driver is None:
        return
    raise ShpeftError(
        f"device auto: the NVIDIA driver {driver} shows a GPU, but torch {torch.__version__} "
        f"(built for CUDA {torch.version.cuda or 'none'}) cannot use it; install a torch build "
        "that this driver supports (README: GPU requirements), or set the device to cpu"
    )


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version where `nvidia-smi` shows a GPU, else None."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The one way a tensor leaves torch for NumPy: detached and on the host first (a CUDA
    tensor's `.numpy()` raises); for a CPU tensor the array shares its memory."""
    return tensor.detach().cpu().numpy()


def to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """The one way a batch of host images reaches the model's device. Bound for CUDA it is copied
    into page-locked memory first (torch's host allocator reuses those blocks once their copy has
    finished), so the copy to the GPU runs asynchronously."""
    batch = torch.from_numpy(images)
    if device.type != "cuda":
        return batch
    return batch.pin_memory().to(device, non_blocking=True)


@dataclass(frozen=True)
class Compute:
    """Where a job computes and how strictly (`finetune.device`, `finetune.deterministic`):
    training, scoring and the demo's pretraining all follow it."""

    device: str = "auto"
    deterministic: bool = False

    def start(self, seed: int) -> torch.device:
        """Seed everything, then the device: call it before any random initialisation."""
        seed_everything(seed, self.deterministic)
        return resolve_device(self.device)


#: The defaults: the best device there is, torch's usual (faster) algorithms.
AUTO = Compute()


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Fix Python, NumPy and torch RNGs (data order uses its own seeded generator)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
