"""The `report` step: everything needed to judge and rerun the grid's results, in one document.

`results/report/REPORT.md` and a self-contained `report.html` (figures embedded) follow the
MICCAI reproducibility checklist items that apply to a computational study: environment, data
(sources, sha256, split sizes per class), preprocessing, methods with their full resolved
configuration, training protocol and model selection, evaluation and statistics, results with
intervals and tests, failure analysis, compute time per job, and the commands, git commit and
`dvc.lock` hash to reproduce them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import platform
import subprocess
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import pandas as pd

from shpeft import paths
from shpeft.aggregate import grid
from shpeft.fileio import atomic_path, read_json, sha256_file
from shpeft.params import run_methods

log = logging.getLogger(__name__)

REPORT_MD = "REPORT.md"
REPORT_HTML = "report.html"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment() -> dict[str, Any]:
    """Machine, accelerator and every installed package's version."""
    import torch

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
        env["gpu driver"] = _nvidia_driver() or "unknown"
    packages = sorted(
        {(d.metadata["Name"] or "?").lower(): d.version for d in distributions()}.items()
    )
    return {**env, "packages": dict(packages)}


def _nvidia_driver() -> str | None:
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


def _table(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "(none)"


def _data_section(params: dict[str, Any]) -> str:
    parts = []
    for dataset in params["grid"]["datasets"]:
        manifest = read_json(paths.data_dir(dataset) / "manifest.json")
        counts = pd.DataFrame(manifest["counts"]).T
        files = manifest.get("source_files") or {}
        listed = "\n".join(f"  - `{name}`: `{digest}`" for name, digest in list(files.items())[:20])
        more = f"\n  - and {len(files) - 20} more (in manifest.json)" if len(files) > 20 else ""
        sources = f"\n{listed}{more}" if files else " none (generated, see the source config)"
        hashes = "\n".join(f"  - `{k}.npy`: `{v}`" for k, v in manifest["arrays_sha256"].items())
        parts.append(
            f"### {dataset}\n\n"
            f"- source config: `{json.dumps(manifest['config'], sort_keys=True)}`\n"
            f"- source files and their sha256:{sources}\n"
            f"- split: {manifest['split_origin']}\n"
            f"- sha256 of the prepared arrays:\n{hashes}\n\n"
            f"Cases per split and class:\n\n{counts.to_markdown()}\n"
        )
    return "\n".join(parts)


def _runs(params: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per run: time and selected epoch; per method: the resolved config of its first run."""
    rows, configs = [], {}
    for dataset, method, seed in grid(params):
        run = paths.run_dir(dataset, method, seed)
        config = read_json(run / "config.json")
        metrics = read_json(run / "metrics.json")
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "seed": seed,
                "device": config["device"],
                "train seconds": round(config.get("train_seconds", float("nan")), 1),
                "selected epoch": metrics["best_epoch"],
            }
        )
        configs.setdefault(method, {k: config[k] for k in ("method_config", "finetune")})
        configs[method]["selection"] = config["selection"]
    return rows, configs


def _commands(params_files: list[str]) -> str:
    overlays = [f for f in params_files if Path(f).name != "params.yaml"]
    snakemake = "snakemake --cores N --resources gpu=K"
    if overlays:
        snakemake += " --configfile " + " ".join(overlays)
    lines = [
        f"git checkout {_git('rev-parse', 'HEAD') or '<commit>'}",
        "make install            # the pinned environment (requirements.lock)",
        snakemake,
    ]
    if not overlays:
        lines.append("dvc repro              # the same DAG with DVC")
    return "```bash\n" + "\n".join(lines) + "\n```\n"


def build_report(params: dict[str, Any], params_files: list[str]) -> str:
    """The report's Markdown."""
    env = environment()
    backbone = read_json(paths.backbone_dir() / "backbone.json")
    runs, configs = _runs(params)
    lock = Path("dvc.lock")
    commit = _git("rev-parse", "HEAD") or "not a git checkout"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    scoring = []
    for dataset in params["grid"]["datasets"]:
        summary = paths.importance_dir(dataset) / "summary.json"
        if summary.is_file():
            scoring.append({"dataset": dataset, "seconds": round(read_json(summary)["seconds"], 1)})
    main = paths.main_table(".md").read_text()
    packages = "\n".join(f"| {k} | {v} |" for k, v in env.pop("packages").items())
    figures = sorted(p.name for p in paths.figures_dir().glob("*.png"))
    failures = [f for f in figures if f.startswith("failures_")]
    method_lines = "\n".join(
        f"- `{m}`: `{json.dumps(configs[m]['method_config'], sort_keys=True)}`; finetune "
        f"`{json.dumps(configs[m]['finetune'], sort_keys=True)}`"
        for m in run_methods(params)
    )
    selection = next(iter(configs.values()))["selection"] if configs else "n/a"
    return f"""# shpeft reproducibility report

Generated by the `report` step. Items follow the MICCAI reproducibility checklist where they
apply to a computational study.

## Code and versions

- git commit: `{commit}`{" (with uncommitted changes)" if dirty else ""}
- `dvc.lock` sha256: `{sha256_file(lock) if lock.is_file() else "no dvc.lock yet"}` (the lock
  as it was when this report was written; a Snakemake run updates it after its last job)
- params files: {", ".join(f"`{f}`" for f in params_files)}

## How to reproduce

{_commands(params_files)}
## Environment

{_table([{"item": k, "value": v} for k, v in env.items()])}

<details><summary>Every installed package</summary>

| package | version |
| --- | --- |
{packages}

</details>

## Data

{_data_section(params)}
## Preprocessing

Images are converted to RGB uint8 at each dataset's `image_size` when prepared (grayscale
replicated, 16-bit mapped linearly from its full range, bicubic antialiased resizing), then
resized on the device to the model's input size and normalised with the backbone's mean and
standard deviation. Training augmentation: `{json.dumps(params["finetune"].get("augment", {}))}`.

## Backbone

- model: `{backbone["config"]["model"]}` with `{json.dumps(backbone["config"]["model_args"])}`
- weights: {backbone["origin"]}; sha256 `{backbone["sha256"]}`; {backbone["num_params"]:,}
  parameters

## Methods (full resolved configuration of each)

{method_lines}

Importance scoring: `{json.dumps(params.get("score", {}), sort_keys=True)}`. Mask variants:
`{json.dumps(params.get("masks", {}), sort_keys=True)}`.

## Training protocol and model selection

Seeds: {", ".join(map(str, params["seeds"]))}. Model selection: {selection}. The test split is
used once per run, after selection.

## Evaluation and statistics

Test metrics per run with 95% percentile bootstrap intervals over test cases
(`results/tables/detail.md`); mean ± std over seeds; paired two-sided Wilcoxon signed-rank
tests over datasets and seeds (`results/tables/comparisons.csv`), settings
`{json.dumps(params.get("stats", {}), sort_keys=True)}`.

## Results

{main}
## Sweeps

{_sweeps_section(params)}
## Failure cases

The most confidently wrong test images per dataset: {", ".join(failures) or "none"}
(in `results/figures/`). Confusion matrices: `confusion_<dataset>`.

## Compute

Importance scoring per dataset:

{_table(scoring)}

Training per run:

{_table(runs)}
"""


def _sweeps_section(params: dict[str, Any]) -> str:
    from shpeft.sweeps import active_sweeps

    parts = [
        (paths.sweep_summary_dir(name) / "sweep.md").read_text() for name in active_sweeps(params)
    ]
    return "\n".join(parts) or "No sweep ran (`sweeps.*.values` empty).\n"


def _figure_files(params: dict[str, Any]) -> dict[str, Path]:
    """Every PNG the report embeds, by caption: the figures step's, then each sweep's."""
    from shpeft.sweeps import active_sweeps

    figures = {png.stem: png for png in sorted(paths.figures_dir().glob("*.png"))}
    for name in active_sweeps(params):
        figures[f"sweep_{name}"] = paths.sweep_summary_dir(name) / "sweep.png"
    return figures


def _html(markdown_text: str, figures: dict[str, Path]) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    images = []
    for caption, png in figures.items():
        data = base64.b64encode(png.read_bytes()).decode()
        images.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;"
        "padding:2px 6px}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>shpeft report</title>"
        f"<style>{style}</style></head><body>{body}<h2>Figures</h2>{''.join(images)}"
        "</body></html>\n"
    )


def write_report(params: dict[str, Any], params_files: list[str]) -> Path:
    text = build_report(params, params_files)
    with atomic_path(paths.report_dir()) as tmp:
        tmp.mkdir()
        (tmp / REPORT_MD).write_text(text)
        (tmp / REPORT_HTML).write_text(_html(text, _figure_files(params)))
    log.info("report written to %s", paths.report_dir())
    return paths.report_dir() / REPORT_MD
