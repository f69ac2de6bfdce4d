"""Where files go, in one place: every experiment's outputs under `results/<experiment>/`.

The DAG (`shpeft.dag`), and through it Snakemake's rules and DVC's stages, and every step build
paths from a `Layout`. The arguments may be placeholders (`{dataset}` for Snakemake,
`${item.dataset}` for DVC) as well as values, so every method here only joins names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RESULTS = Path("results")

# The files of the tables folder (the aggregate step's output).
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
CURVES_CSV = "curves.csv"
PARETO_CSV = "pareto.csv"
COMPARISONS_CSV = "comparisons.csv"
RANKS_CSV = "ranks.csv"
NEMENYI_CSV = "nemenyi.csv"
FRIEDMAN_JSON = "friedman.json"
#: The stem of a sweep summary's files: `sweep.csv`, `sweep.md`, `sweep.png`, `sweep.pdf`.
SWEEP_SUMMARY = "sweep"


def main_table(suffix: str) -> str:
    """The paper-shaped comparison: `.csv`, `.md` or `.tex`."""
    return f"main{suffix}"


def detail_table(suffix: str) -> str:
    """Every run's test metrics with bootstrap intervals: `.csv` or `.md`."""
    return f"detail{suffix}"


def stats_of(mask: Path) -> Path:
    """The statistics file beside a mask file."""
    return Path(mask).with_suffix(".json")


def sweep_summary_file(summary_dir: str | Path, suffix: str) -> Path:
    return Path(summary_dir) / f"{SWEEP_SUMMARY}{suffix}"


def bench_dir() -> Path:
    return RESULTS / "bench"


def checkpoint_file(out_dir: str | Path) -> Path:
    """A job's resumable training state for `out_dir`: under `.shpeft/`, since Snakemake and DVC
    delete a job's outputs before running it (an absolute `out_dir` loses its root)."""
    out = Path(out_dir)
    return Path(".shpeft") / "checkpoints" / out.relative_to(out.anchor) / "state.pt"


def layout(experiment: str) -> Layout:
    return Layout(RESULTS / experiment)


@dataclass(frozen=True)
class Layout:
    """The outputs of one experiment, below `root` (`results/<experiment>`)."""

    root: Path

    def data_root(self) -> Path:
        return self.root / "data"

    def data_dir(self, dataset: str) -> Path:
        return self.data_root() / dataset

    def backbone_dir(self) -> Path:
        return self.root / "backbone"

    def importance_root(self) -> Path:
        return self.root / "importance"

    def importance_dir(self, dataset: str, seed: int | str) -> Path:
        """The scores of one dataset with one scoring seed (`Params.mask_seed`)."""
        return self.importance_root() / dataset / f"seed{seed}"

    def masks_root(self) -> Path:
        return self.root / "masks"

    def mask_file(self, dataset: str, variant: str, seed: int | str) -> Path:
        return self.masks_root() / dataset / f"seed{seed}" / f"{variant}.safetensors"

    def mask_stats(self, dataset: str, variant: str, seed: int | str) -> Path:
        return stats_of(self.mask_file(dataset, variant, seed))

    def oracle_root(self) -> Path:
        return self.root / "oracle"

    def oracle_mask_file(self, dataset: str, seed: int | str) -> Path:
        """The entries the full fine-tuning run with `seed` changed most (`sparse-oracle`)."""
        return self.oracle_root() / dataset / f"seed{seed}.safetensors"

    def oracle_stats(self, dataset: str, seed: int | str) -> Path:
        return stats_of(self.oracle_mask_file(dataset, seed))

    def study_root(self) -> Path:
        return self.root / "study"

    def study_dir(self, dataset: str, seed: int | str) -> Path:
        """The sparsity and hybridity study of one dataset's full fine-tuning run with `seed`."""
        return self.study_root() / dataset / f"seed{seed}"

    def tuning_root(self) -> Path:
        return self.root / "tuning"

    def tuning_file(self, dataset: str, method: str) -> Path:
        """A method's tuned recipe on a dataset: the choice and every candidate's scores."""
        return self.tuning_root() / dataset / f"{method}.json"

    def runs_root(self) -> Path:
        return self.root / "runs"

    def run_dir(self, dataset: str, method: str, seed: int | str) -> Path:
        return self.runs_root() / dataset / method / f"seed{seed}"

    def tables_dir(self) -> Path:
        return self.root / "tables"

    def table(self, name: str) -> Path:
        """A file of the tables folder, e.g. `table(SUMMARY_CSV)`."""
        return self.tables_dir() / name

    def figures_dir(self) -> Path:
        return self.root / "figures"

    def report_dir(self) -> Path:
        return self.root / "report"

    def metrics_file(self) -> Path:
        return self.root / "metrics.json"

    def sweep_dir(self, sweep: str) -> Path:
        return self.root / "sweeps" / sweep

    def sweep_points_dir(self, sweep: str) -> Path:
        return self.sweep_dir(sweep) / "points"

    def sweep_point_dir(self, sweep: str, value: str, dataset: str) -> Path:
        """One value of a sweep on one dataset: its masks and a run per seed."""
        return self.sweep_points_dir(sweep) / value / dataset

    def sweep_mask_file(self, sweep: str, value: str, dataset: str, seed: int | str) -> Path:
        return self.sweep_point_dir(sweep, value, dataset) / "masks" / f"seed{seed}.safetensors"

    def sweep_mask_stats(self, sweep: str, value: str, dataset: str, seed: int | str) -> Path:
        return stats_of(self.sweep_mask_file(sweep, value, dataset, seed))

    def sweep_run_dir(self, sweep: str, value: str, dataset: str, seed: int | str) -> Path:
        return self.sweep_point_dir(sweep, value, dataset) / f"seed{seed}"

    def sweep_summary_dir(self, sweep: str) -> Path:
        """The sweep's table and figure (`sweep_summary_file`)."""
        return self.sweep_dir(sweep) / "summary"

    def log_file(self, step: str, *names: str) -> Path:
        return self.root / "logs" / step / f"{'/'.join(names) or step}.log"
