"""`shpeft bench prepare`: peak memory of preparing a MedMNIST-format archive of several GB.

It writes a deflated npz with the six arrays of an official file (random pixels, so nothing
compresses away) without ever holding it, then measures, each in a fresh process, the peak
resident memory of three variants: `imports` (the interpreter with the prepare step loaded, the
floor), `stream` (the `prepare` step, which streams from the archive into the prepared
arrays) and `whole` (reading every array into memory, as a naive loader does and this project
did before). The ratios are between variants of the same run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shpeft.bench.report import write_report
from shpeft.data.medmnist import npz_name
from shpeft.errors import ShpeftError

PREPARE_VARIANTS = ("imports", "stream", "whole")
#: The official files' split shares (MedMNIST's BreastMNIST: 546/78/156).
_SHARES = {"train": 0.7, "val": 0.1, "test": 0.2}


@dataclass
class PrepareBench:
    #: Gigabytes (1e9 bytes) of pixels in the generated archive.
    gigabytes: float = 3.0
    #: Side of the archive's images: 28, 64, 128 or 224, as MedMNIST+ stores them.
    stored_size: int = 224
    #: Side of the prepared images (the archive's side: no resizing).
    img_size: int = 224
    #: Decoding threads (`OMP_NUM_THREADS` of the step).
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gigabytes <= 0:
            raise ShpeftError(f"bench prepare: --gigabytes must be positive, not {self.gigabytes}")


def write_archive(path: Path, gigabytes: float, size: int, seed: int) -> dict[str, int]:
    """A deflated npz of (N, size, size) uint8 images and (N, 1) labels per split, written
    member by member; returns the images per split."""
    total = int(gigabytes * 1e9 // (size * size))
    counts = {split: max(2, int(total * share)) for split, share in _SHARES.items()}  # both classes
    rng = np.random.default_rng(seed)
    step = max(1, (64 << 20) // (size * size))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for split, n in counts.items():
            header = {"descr": "|u1", "fortran_order": False, "shape": (n, size, size)}
            with archive.open(f"{split}_images.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array_header_1_0(handle, header)
                for start in range(0, n, step):
                    count = min(step, n - start)
                    handle.write(rng.integers(0, 256, (count, size, size), np.uint8).data)
            with archive.open(f"{split}_labels.npy", "w") as handle:
                np.save(handle, (np.arange(n) % 2).astype(np.uint8)[:, None])
    return counts


def _reset_peak() -> None:
    """Start the peak anew from what is resident now (Linux), so that the import's transient
    peak does not hide the variant's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak() -> int:
    """Peak resident bytes since `_reset_peak` (Linux), else since the process started."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


def _measure(variant: str, archive: str, out: str, cfg: PrepareBench, pipe) -> None:
    """Run one variant in this (fresh) process; send back its peak memory and time, or its
    error."""
    import os

    os.environ["OMP_NUM_THREADS"] = str(cfg.threads)
    from shpeft.data.prepared import prepare_dataset as prepare
    from shpeft.data.registry import sources  # the floor: what every variant imports

    try:
        _reset_peak()
        started = time.perf_counter()
        path = Path(archive)
        if variant == "stream":
            entry = {"source": "medmnist", "name": "breastmnist", "root": str(path.parent)}
            entry.update(size=cfg.stored_size, image_size=cfg.img_size)
            prepare("bench", sources()["medmnist"].config_model.model_validate(entry), Path(out))
        elif variant == "whole":
            with np.load(path) as npz:
                arrays = {key: npz[key] for key in npz.files}
            del arrays
        pipe.send({"peak_bytes": _peak(), "seconds": time.perf_counter() - started})
    except Exception as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


def prepare_memory(cfg: PrepareBench, out_dir: str | Path) -> dict[str, Any]:
    """Measure every variant on one generated archive; write `prepare-*.json`; return it."""
    context = multiprocessing.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory(prefix="shpeft-bench-", dir=out_dir) as tmp:
        archive = Path(tmp) / npz_name("breastmnist", cfg.stored_size)
        started = time.perf_counter()
        counts = write_archive(archive, cfg.gigabytes, cfg.stored_size, cfg.seed)
        written = time.perf_counter() - started
        pixels = sum(counts.values()) * cfg.stored_size**2
        for variant in PREPARE_VARIANTS:
            receive, send = context.Pipe(duplex=False)
            args = (variant, str(archive), str(Path(tmp) / "prepared"), cfg, send)
            process = context.Process(target=_measure, args=args)
            process.start()
            send.close()  # so that a child killed before sending ends `recv`
            try:
                result = receive.recv()
            except EOFError:
                result = {"error": "the process died (out of memory?)"}
            process.join()
            if "error" in result:
                raise ShpeftError(f"bench prepare, variant {variant}: {result['error']}")
            rows.append({"variant": variant, **result})
        archive_bytes = archive.stat().st_size
    peak = {row["variant"]: row["peak_bytes"] for row in rows}
    results = {
        "images": counts,
        "archive_pixels_bytes": pixels,
        "archive_file_bytes": archive_bytes,
        "archive_write_seconds": written,
        "rows": rows,
        "stream_over_imports_bytes": peak["stream"] - peak["imports"],
        "stream_vs_whole": peak["stream"] / peak["whole"],
        "stream_peak_vs_pixels": peak["stream"] / pixels,
    }
    out = Path(out_dir) / f"prepare-{cfg.gigabytes:g}GB-{cfg.stored_size}to{cfg.img_size}px.json"
    return write_report(cfg, torch.device("cpu"), results, out)


def prepare_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table, with the ratios below it."""
    pixels = report["archive_pixels_bytes"]
    lines = [
        f"Archive: {sum(report['images'].values()):,} images, {pixels / 1e9:.2f} GB of pixels, "
        f"{report['archive_file_bytes'] / 1e9:.2f} GB on disk",
        "",
        "| variant | peak memory (GB) | peak / archive pixels | seconds |",
        "|---|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['variant']} | {row['peak_bytes'] / 1e9:.3f} | "
            f"{row['peak_bytes'] / pixels:.3f} | {row['seconds']:.1f} |"
        )
    lines.append(
        f"\nstream peak / whole-archive peak = {report['stream_vs_whole']:.3f}; stream peak "
        f"above the imports floor = {report['stream_over_imports_bytes'] / 1e9:.3f} GB"
    )
    return "\n".join(lines)
