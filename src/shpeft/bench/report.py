"""What every benchmark writes: its options, the machine and versions, then its results."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from shpeft.fileio import write_json


def write_report(cfg: Any, device: torch.device, results: dict[str, Any], out: Path) -> dict:
    """A bench's JSON: its options, the machine and versions, then its results."""
    report = {
        "config": asdict(cfg),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "torch": torch.__version__,
        **results,
    }
    write_json(out, report)
    report["file"] = str(out)
    return report
