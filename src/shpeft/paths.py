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


def sweep_dir(sweep: str) -> Path:
    return RESULTS / "sweeps" / sweep


def sweep_point_dir(sweep: str, value: str, dataset: str) -> Path:
    """One value of a sweep on one dataset: its mask and a run per seed."""
    return sweep_dir(sweep) / "points" / value / dataset


def sweep_mask_file(sweep: str, value: str, dataset: str) -> Path:
    return sweep_point_dir(sweep, value, dataset) / "mask.safetensors"


def sweep_mask_stats(sweep: str, value: str, dataset: str) -> Path:
    return sweep_mask_file(sweep, value, dataset).with_suffix(".json")


def sweep_run_dir(sweep: str, value: str, dataset: str, seed: int | str) -> Path:
    return sweep_point_dir(sweep, value, dataset) / f"seed{seed}"


def sweep_summary_dir(sweep: str) -> Path:
    """The sweep's table and figure (`sweep.csv`, `sweep.md`, `sweep.png`, `sweep.pdf`)."""
    return sweep_dir(sweep) / "summary"


def bench_dir() -> Path:
    return RESULTS / "bench"


def log_file(step: str, *names: str) -> Path:
    return RESULTS / "logs" / step / f"{'/'.join(names) or step}.log"


def checkpoint_file(out_dir: str | Path) -> Path:
    """A job's resumable training state for `out_dir`: under `.shpeft/`, since Snakemake and DVC
    delete a job's outputs before running it (an absolute `out_dir` loses its root)."""
    out = Path(out_dir)
    return Path(".shpeft") / "checkpoints" / out.relative_to(out.anchor) / "state.pt"
