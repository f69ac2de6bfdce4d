"""The `results/` layout, in one place. Rules, DVC stages and steps all build paths from here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESULTS = Path("results")


def data_dir(dataset: str) -> Path:
    return RESULTS / "data" / dataset


def backbone_dir() -> Path:
    return RESULTS / "backbone"


def importance_dir(dataset: str) -> Path:
    return RESULTS / "importance" / dataset


def mask_file(dataset: str, variant: str) -> Path:
    return RESULTS / "masks" / dataset / f"{variant}.safetensors"


def mask_stats(dataset: str, variant: str) -> Path:
    return mask_file(dataset, variant).with_suffix(".json")


def method_inputs(dataset: str, method: dict[str, Any]) -> dict[str, Path]:
    """Files a method reads besides the data and the backbone: a sparse method's mask."""
    return {"mask": mask_file(dataset, method["mask"])} if "mask" in method else {}


def run_dir(dataset: str, method: str, seed: int | str) -> Path:
    return RESULTS / "runs" / dataset / method / f"seed{seed}"


def tables_dir() -> Path:
    return RESULTS / "tables"


def figures_dir() -> Path:
    return RESULTS / "figures"


def report_dir() -> Path:
    return RESULTS / "report"


def metrics_file() -> Path:
    return RESULTS / "metrics.json"


def summary_csv() -> Path:
    return tables_dir() / "summary.csv"


def summary_md() -> Path:
    return tables_dir() / "summary.md"


def curves_csv() -> Path:
    return tables_dir() / "curves.csv"


def main_table(suffix: str) -> Path:
    """The paper-shaped comparison: `.csv`, `.md` or `.tex`."""
    return tables_dir() / f"main{suffix}"


def detail_table(suffix: str) -> Path:
    """Every run's test metrics with bootstrap intervals: `.csv` or `.md`."""
    return tables_dir() / f"detail{suffix}"


def pareto_csv() -> Path:
    """Per method: mean test accuracy and trainable fraction (DVC's Pareto plot)."""
    return tables_dir() / "pareto.csv"


def comparisons_csv() -> Path:
    return tables_dir() / "comparisons.csv"


def bench_dir() -> Path:
    return RESULTS / "bench"


def log_file(step: str, *names: str) -> Path:
    return RESULTS / "logs" / step / f"{'/'.join(names) or step}.log"
