"""The `results/` layout, in one place. The DAG (`shpeft.dag`), and through it Snakemake's rules
and DVC's stages, and every step build paths from here.

The arguments may be placeholders (`{dataset}` for Snakemake, `${item.dataset}` for DVC) as well
as values, so every function here only joins names.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("results")


def data_root() -> Path:
    return RESULTS / "data"


def data_dir(dataset: str) -> Path:
    return data_root() / dataset


def backbone_dir() -> Path:
    return RESULTS / "backbone"


def importance_root() -> Path:
    return RESULTS / "importance"


def importance_dir(dataset: str) -> Path:
    return importance_root() / dataset


def masks_root() -> Path:
    return RESULTS / "masks"


def mask_file(dataset: str, variant: str) -> Path:
    return masks_root() / dataset / f"{variant}.safetensors"


def mask_stats(dataset: str, variant: str) -> Path:
    return stats_of(mask_file(dataset, variant))


def stats_of(mask: Path) -> Path:
    """The statistics file beside a mask file."""
    return Path(mask).with_suffix(".json")


def runs_root() -> Path:
    return RESULTS / "runs"


def run_dir(dataset: str, method: str, seed: int | str) -> Path:
    return runs_root() / dataset / method / f"seed{seed}"


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


def sweep_points_dir(sweep: str) -> Path:
    return sweep_dir(sweep) / "points"


def sweep_point_dir(sweep: str, value: str, dataset: str) -> Path:
    """One value of a sweep on one dataset: its mask and a run per seed."""
    return sweep_points_dir(sweep) / value / dataset


def sweep_mask_file(sweep: str, value: str, dataset: str) -> Path:
    return sweep_point_dir(sweep, value, dataset) / "mask.safetensors"


def sweep_mask_stats(sweep: str, value: str, dataset: str) -> Path:
    return stats_of(sweep_mask_file(sweep, value, dataset))


def sweep_run_dir(sweep: str, value: str, dataset: str, seed: int | str) -> Path:
    return sweep_point_dir(sweep, value, dataset) / f"seed{seed}"


def sweep_summary_dir(sweep: str) -> Path:
    """The sweep's table and figure (`sweep_summary_file`)."""
    return sweep_dir(sweep) / "summary"


#: The stem of a sweep summary's files: `sweep.csv`, `sweep.md`, `sweep.png`, `sweep.pdf`.
SWEEP_SUMMARY = "sweep"


def sweep_summary_file(summary_dir: str | Path, suffix: str) -> Path:
    return Path(summary_dir) / f"{SWEEP_SUMMARY}{suffix}"


def bench_dir() -> Path:
    return RESULTS / "bench"


def log_file(step: str, *names: str) -> Path:
    return RESULTS / "logs" / step / f"{'/'.join(names) or step}.log"


def checkpoint_file(out_dir: str | Path) -> Path:
    """A job's resumable training state for `out_dir`: under `.shpeft/`, since Snakemake and DVC
    delete a job's outputs before running it (an absolute `out_dir` loses its root)."""
    out = Path(out_dir)
    return Path(".shpeft") / "checkpoints" / out.relative_to(out.anchor) / "state.pt"
