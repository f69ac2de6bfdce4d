"""The reproducibility report: everything needed to judge and rerun the grid's results.

`REPORT.md` is rendered from `report.md.j2` (Jinja2); `report.html` is the same Markdown as one
self-contained page with every figure embedded. The items follow the MICCAI reproducibility
checklist where they apply to a computational study: environment, data (sources, sha256, split
sizes per class), preprocessing, methods with their full resolved configuration, training
protocol and model selection, evaluation and statistics, results with intervals and tests,
failure analysis, compute time per job, and the commands, git commit and `dvc.lock` hash.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from shpeft import paths
from shpeft.analysis.stats import level_label
from shpeft.backbone.model import backbone_info
from shpeft.data import leakage
from shpeft.data.prepared import PreparedDataset
from shpeft.fileio import read_json
from shpeft.runs import RunFolder
from shpeft.selection.importance import read_summary
from shpeft.study.config import STUDY_SUMMARY

TEMPLATE = "report.md.j2"
REPORT_MD = "REPORT.md"
REPORT_HTML = "report.html"
#: Source files listed per dataset in the report (all are in its manifest.json).
LISTED_FILES = 20


def table(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "(none)"


def compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def dataset_entry(data_dir: Path) -> dict[str, Any]:
    """What the report says of one prepared dataset, from its manifest."""
    manifest = PreparedDataset.load(data_dir).manifest
    files = list((manifest.get("source_files") or {}).items())
    return {
        "name": manifest["dataset"],
        "config": compact(manifest["config"]),
        "files": files[:LISTED_FILES],
        "more": max(0, len(files) - LISTED_FILES),
        "split": manifest["split_origin"],
        "leakage": (
            leakage.summary(manifest["duplicates"])
            if "duplicates" in manifest
            else "not checked (prepared by an older shpeft: run its `prepare` again)"
        ),
        "arrays": manifest["arrays_sha256"],
        "counts": pd.DataFrame(manifest["counts"]).T.to_markdown(),
    }


def run_entries(run_dirs: Sequence[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per run: device, time and selected epoch; per method: the resolved config of its first
    run (with the selection rule, the same for all)."""
    rows, methods = [], {}
    for run in map(RunFolder, run_dirs):
        config, metrics = run.config(), run.metrics()
        where = config.get("machine", {})
        rows.append(
            {
                "dataset": config["dataset"],
                "method": config["method"],
                "seed": config["seed"],
                "device": config["device"],
                "gpu": where.get("gpu", "?"),
                "host": where.get("host", "?"),
                "train seconds": round(config.get("train_seconds", float("nan")), 1),
                "selected epoch": metrics["best_epoch"],
            }
        )
        methods.setdefault(
            config["method"],
            {
                "method_config": compact(config["method_config"]),
                "finetune": compact(config["finetune"]),
                "selection": config["selection"],
            },
        )
    return rows, methods


def scoring_entry(importance_dir: Path) -> dict[str, Any]:
    """One score job's line of the compute section: its dataset, seed and time."""
    summary = read_summary(importance_dir)
    return {
        "dataset": Path(importance_dir).parent.name,
        "scoring seed": summary["config"]["seed"],
        "seconds": round(summary["seconds"], 1),
    }


def recipes(run_dirs: Sequence[Path]) -> str:
    """The recipe each dataset x method trained with, and where it came from (a tuning file and
    its grid, or the method's own source)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for run in map(RunFolder, run_dirs):
        config = run.config()
        recipe, cfg = config.get("recipe", {}), config["finetune"]
        tuned = recipe.get("tuned")
        rows.setdefault(
            (config["dataset"], config["method"]),
            {
                "dataset": config["dataset"],
                "method": config["method"],
                "optimizer": cfg["optimizer"],
                "lr": cfg["lr"],
                "lr per": cfg.get("lr_batch") or "-",
                "weight decay": cfg["weight_decay"],
                "chosen on validation from": compact(recipe["grid"]) if tuned else "not tuned",
                "own recipe": recipe.get("source", "?"),
            },
        )
    return table(list(rows.values()))


def machines(run_dirs: Sequence[Path]) -> str:
    """Where training ran, as the runs recorded it (not the machine writing the report)."""
    seen: dict[str, dict[str, Any]] = {}
    for run in map(RunFolder, run_dirs):
        where = run.config().get("machine")
        if where:
            entry = seen.setdefault(json.dumps(where, sort_keys=True), {**where, "runs": 0})
            entry["runs"] += 1
    return table(list(seen.values()))


def commands(params_files: Sequence[str], checkout: str) -> list[str]:
    overlays = [f for f in params_files if Path(f).name != "params.yaml"]
    snakemake = "snakemake --cores N --resources gpu=K"
    if overlays:
        snakemake += " --configfile " + " ".join(overlays)
    lines = [
        f"git checkout {checkout}",
        "make install            # the pinned environment (requirements.lock)",
        snakemake,
    ]
    if not overlays:
        lines.append("dvc repro              # the same DAG with DVC")
    return lines


def render(context: dict[str, Any]) -> str:
    """REPORT.md from the template."""
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML; report.html escapes through markdown-it
    )
    environment.filters["code"] = lambda value: f"`{value}`"
    return environment.get_template(TEMPLATE).render(**context)


def context(
    inputs: dict[str, Any], params: Any, env: dict[str, Any], git: dict[str, Any]
) -> dict[str, Any]:
    """Everything the template shows, read from the report step's inputs."""
    runs, methods = run_entries(inputs["runs"])
    backbone = backbone_info(inputs["backbone"])
    packages = env.pop("packages")
    figures = sorted(p.name for p in Path(inputs["figures"]).glob("failures_*.png"))
    return {
        **git,
        "files": params.files,
        "commands": commands(params.files, git["checkout"]),
        "environment": table([{"item": k, "value": v} for k, v in env.items()]),
        "machines": machines(inputs["runs"]),
        "packages": packages,
        "datasets": [dataset_entry(d) for d in inputs["data"]],
        "augment": compact(params.finetune.augment.model_dump()),
        "backbone": {
            "model": backbone.config.model,
            "model_args": json.dumps(backbone.config.create_args),
            "origin": backbone.origin,
            "sha256": backbone.sha256,
            "num_params": backbone.num_params,
        },
        "methods": {m: methods[m] for m in params.grid.methods if m in methods},
        "score": compact(params.score.model_dump()),
        "mask_seeds": (
            "Each seed scored and built its own masks, so the intervals over seeds include the "
            "variance of the selection."
            if params.score.seed is None
            else f"One mask per dataset and variant, scored with seed {params.score.seed}, shared "
            "by every seed: the intervals over seeds leave out the variance of the selection."
        ),
        "masks": compact({name: mask.model_dump() for name, mask in params.masks.items()}),
        "seeds": params.seeds,
        "selection": next(iter(methods.values()))["selection"] if methods else "n/a",
        "tuning": compact(params.tune.model_dump()),
        "recipes": recipes(inputs["runs"]),
        "level": level_label(params.stats.level),
        "stats": compact(params.stats.model_dump()),
        "main_table": (Path(inputs["tables"]) / paths.main_table(".md")).read_text(),
        "sweeps": "\n".join(
            paths.sweep_summary_file(s, ".md").read_text() for s in inputs["sweeps"]
        )
        or "No sweep ran (`sweeps.*.values` empty).\n",
        "failures": figures,
        "studies": [study_entry(d) for d in inputs["study"]],
        "scoring": table([scoring_entry(d) for d in inputs["importance"]]),
        "training": table(runs),
    }


def figure_files(
    figures_dir: Path, sweeps: Sequence[Path], studies: Sequence[Path]
) -> dict[str, Path]:
    """Every PNG the report embeds, by caption: the figures step's, each sweep's, then each
    study's (`study_<dataset>_seed<s>_<figure>`)."""
    found = {png.stem: png for png in sorted(Path(figures_dir).glob("*.png"))}
    for summary in map(Path, sweeps):
        found[f"sweep_{summary.parent.name}"] = paths.sweep_summary_file(summary, ".png")
    for study in map(Path, studies):
        for png in sorted(study.glob("*.png")):
            found[f"study_{study.parent.name}_{study.name}_{png.stem}"] = png
    return found


def study_entry(study_dir: Path) -> dict[str, Any]:
    """What the report shows of one study: its headline numbers and two of its tables."""
    study = Path(study_dir)
    summary = read_json(study / STUDY_SUMMARY)
    curve = pd.read_csv(study / "sparsity.csv")
    shown = curve[curve["share"].isin([0.001, 0.01, 0.1])]
    references = summary["references"]
    return {
        "title": summary["title"],
        "folder": str(study),
        "key_weights": summary["key_weights"],
        "candidates": summary["candidates"],
        "held": "; ".join(
            f"the top {row['share']:g} of entries hold {row['change held']:.3f} of the change "
            f"(test accuracy {row['test accuracy']:.3f} with only theirs kept)"
            for row in shown.to_dict("records")
        )
        or "see the sparsity table",
        "full": references["full fine-tuning"]["test"]["accuracy"],
        "pretrained": references["pretrained"]["test"]["accuracy"],
        "regions": _body(study / "regions.md"),
        "masks": _body(study / "masks.md"),
    }


def _body(table_md: Path) -> str:
    """A Markdown table file without its caption (the report says what it is)."""
    return table_md.read_text().split("\n\n", 1)[1]


def html(markdown_text: str, figures: dict[str, Path]) -> str:
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
