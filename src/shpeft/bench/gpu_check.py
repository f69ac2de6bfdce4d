"""`make gpu-check`: what the first run on a CUDA machine must show, in one command.

1. The device, its driver and the torch build.
2. The tiny grid (`tests/params.tiny.yaml`) with one concurrent training job per GPU: from the
   jobs' logs (`using GPU <n>`, and their first and last time stamps), no two jobs that ran at the
   same time held the same device.
3. The train-step benchmark on ViT-B/16 at 224 px, bf16, batch 64: full fine-tuning, the sparse
   engine (and its deterministic path), LoRA and the frozen floor, time per step and peak memory.
4. Repeatability: the tiny grid narrowed to one dataset, with `finetune.deterministic: true`, run
   twice as two experiments: every trained file and the summary table must be equal byte for byte.

JSON and a Markdown summary go to `results/gpu-check/`. Without CUDA it says so and exits with
`NO_CUDA`, so a script can tell "not checked" from "failed" (1).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from shpeft import paths
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file, write_json

NO_CUDA = 3
OUT = Path("results") / "gpu-check"
TINY = Path("tests") / "params.tiny.yaml"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
#: The tiny grid's deterministic copy: two experiments that must agree bit for bit.
REPEAT = "experiment: {name}\ngrid: {{datasets: [tiny_us]}}\nfinetune: {{deterministic: true}}\n"
REPEAT_SWEEPS = "sweeps: {budget: {values: []}, rho: {values: []}}\n"


def gpu_check(out: Path = OUT) -> int:
    """Run the four checks; 0 when the concurrency and repeatability checks pass, 1 when one
    fails (the benchmark measures, it does not pass or fail), `NO_CUDA` without a GPU."""
    import torch

    if not torch.cuda.is_available():
        print(
            f"gpu-check: torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}) "
            "sees no CUDA device; nothing was checked"
        )
        return NO_CUDA
    out.mkdir(parents=True, exist_ok=True)
    gpus = torch.cuda.device_count()
    report: dict[str, Any] = {"device": device_info(gpus)}
    report["concurrency"] = concurrency(gpus)
    report["train_step"] = train_step_check(out)
    report["repeatability"] = repeatability(out, gpus)
    report["passed"] = report["concurrency"]["passed"] and report["repeatability"]["passed"]
    write_json(out / "gpu-check.json", report)
    summary = markdown(report)
    (out / "gpu-check.md").write_text(summary)
    print(summary)
    print(f"written to {out}/gpu-check.json and gpu-check.md")
    return 0 if report["passed"] else 1


def device_info(gpus: int) -> dict[str, Any]:
    import torch

    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        smi = subprocess.run(query, capture_output=True, text=True)
        found = smi.stdout.strip().splitlines() if smi.returncode == 0 else smi.stderr.strip()
    except OSError as exc:  # a container with CUDA but without the tool
        found = f"nvidia-smi not run: {exc}"
    return {
        "gpus": [torch.cuda.get_device_name(i) for i in range(gpus)],
        "nvidia_smi": found,
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "bf16": torch.cuda.is_bf16_supported(),
    }


def _snakemake(gpus: int, *configfiles: Path) -> None:
    # --forceall: a check that found last time's outputs would only read them again.
    snakemake = str(Path(sys.executable).parent / "snakemake")
    command = [snakemake, "--profile", "profiles/default", "--forceall"]
    command += ["--cores", str(os.cpu_count()), "--resources", f"gpu={gpus}"]
    command += ["--configfile", *map(str, configfiles)]
    if subprocess.run(command).returncode != 0:
        raise ShpeftError(f"{' '.join(command[1:])} failed: see its output above")


def concurrency(gpus: int) -> dict[str, Any]:
    """Run the tiny grid, `gpus` training jobs at a time; then `device_overlaps` of its logs."""
    _snakemake(gpus, TINY)
    return device_overlaps(job_logs(paths.layout("tiny").root))


def job_logs(root: Path) -> list[Path]:
    """Every job's log of an experiment (`logs/<step>/<wildcard values...>.log`)."""
    return sorted((root / "logs").rglob("*.log"))


def device_overlaps(logs: list[Path]) -> dict[str, Any]:
    """Which jobs held a GPU (`using GPU <n>` in their log) over which time (their first and last
    time stamps), and the pairs that ran at the same time on the same device."""
    held = []
    for log in logs:
        lines = log.read_text().splitlines()
        device = next((m[1] for line in lines if (m := re.search(r"using GPU (\S+)", line))), None)
        stamps = [_time(m[1]) for line in lines if (m := STAMP.match(line))]
        if device is not None and stamps:
            held.append({"log": str(log), "gpu": device, "start": stamps[0], "end": stamps[-1]})
    pairs = [
        (a, b)
        for i, a in enumerate(held)
        for b in held[i + 1 :]
        if a["start"] < b["end"] and b["start"] < a["end"]
    ]
    clashes = [(a["log"], b["log"]) for a, b in pairs if a["gpu"] == b["gpu"]]
    return {
        "jobs_on_gpu": len(held),
        "devices_used": sorted({h["gpu"] for h in held}),
        "overlapping_pairs": len(pairs),
        "same_device_overlaps": clashes,
        "passed": bool(held) and not clashes,
    }


def _time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")


def train_step_check(out: Path) -> dict[str, Any]:
    from shpeft.bench.train_step import TrainStepBench, train_step

    cfg = TrainStepBench(
        model="vit_base_patch16_224", img_size=224, batch_size=64, device="cuda", bf16=True
    )
    return train_step(cfg, out)


def repeatability(out: Path, gpus: int) -> dict[str, Any]:
    """The narrowed deterministic grid twice; the files that differ between the two."""
    roots = []
    for name in ("gpu-check-a", "gpu-check-b"):
        overlay = out / f"{name}.yaml"
        overlay.write_text(REPEAT.format(name=name) + REPEAT_SWEEPS)
        _snakemake(gpus, TINY, overlay)
        roots.append(paths.layout(name).root)
    compared = [
        *(p.relative_to(roots[0]) for p in sorted(roots[0].glob("runs/**/*.safetensors"))),
        Path("tables") / paths.SUMMARY_CSV,
    ]
    differ = [str(p) for p in compared if sha256_file(roots[0] / p) != sha256_file(roots[1] / p)]
    return {"compared": [str(p) for p in compared], "differ": differ, "passed": not differ}


def markdown(report: dict[str, Any]) -> str:
    from shpeft.bench.train_step import table

    device, grid, repeat = report["device"], report["concurrency"], report["repeatability"]
    return "\n".join(
        [
            "# GPU check",
            "",
            f"- Devices: {', '.join(device['gpus'])}",
            f"- nvidia-smi (name, driver, memory): {json.dumps(device['nvidia_smi'])}",
            f"- torch {device['torch']}, CUDA {device['cuda_build']}, cuDNN {device['cudnn']}",
            f"- Tiny grid: {grid['jobs_on_gpu']} jobs on {len(grid['devices_used'])} devices, "
            f"{grid['overlapping_pairs']} pairs ran at once, {len(grid['same_device_overlaps'])} "
            f"of them on one device: {'pass' if grid['passed'] else 'FAIL'}",
            f"- Deterministic reruns: {len(repeat['compared'])} files compared, "
            f"{len(repeat['differ'])} differ: {'pass' if repeat['passed'] else 'FAIL'}",
            "",
            "Train step, ViT-B/16, 224 px, bf16, batch 64 (peak memory: CUDA's):",
            "",
            table(report["train_step"]),
            "",
        ]
    )
