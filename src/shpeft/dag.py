"""The pipeline, stated once: every step's command, inputs, outputs and the params it reads.

Snakemake's rules (`workflow/rules/steps.smk`, one rule per step here) and `dvc.yaml`
(`shpeft.dvc_yaml`, generated) are both made from this table, and the command line hands each
step exactly the params sections declared here, so what a step reads, what its rule declares and
what its DVC stage declares cannot drift apart.

A step runs once per combination of its wildcards (`over`), each drawn from a `Domain` of the
params. Its command is `shpeft <step> --<wildcard> <value> ... --log <log file>`; its function is
`run(job, inputs, **sections)` in `shpeft.steps.<step>`, where `reads` maps each keyword to the
params key path it comes from. Outputs without a file suffix are directories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shpeft.config import NAME_PATTERN
from shpeft.data.registry import raw_inputs
from shpeft.methods.sparse import mask_trainers
from shpeft.paths import Layout
from shpeft.sweeps import AXES

if TYPE_CHECKING:
    from shpeft.params import Params

FILE_SUFFIXES = (".json", ".safetensors", ".csv")


@dataclass(frozen=True)
class Domain:
    """The values a wildcard takes, given the params and the wildcards before it."""

    values: Callable[[Params, dict[str, str]], list[Any]]
    #: The params keys DVC's matrix may iterate, the first that params.yaml states (they may name
    #: wildcards before them, `sweeps.{sweep}`), or a function of the params giving them (none:
    #: the values written out); None: one DVC stage per value instead.
    dvc: tuple[str, ...] | Callable[[Params], tuple[str, ...]] | None = None

    def dvc_keys(self, params: Params) -> tuple[str, ...]:
        return self.dvc(params) if callable(self.dvc) else self.dvc or ()


@dataclass(frozen=True)
class Inputs:
    """Files a job reads. `each` are the job's own; `gathered` are collected over other jobs,
    which DVC depends on through the folder (`root`) that holds them, or one by one if None.
    The folders under a `trees` key stand for every file inside them: Snakemake gets the files
    (its triggers compare files), DVC the folder (it hashes what is inside)."""

    each: Callable[[Params, Job], dict[str, Path | list[Path]]] = lambda p, j: {}
    gathered: Callable[[Params, Job], dict[str, list[Path]]] = lambda p, j: {}
    roots: dict[str, Callable[[Job], Path] | None] = field(default_factory=dict)
    trees: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    name: str
    help: str
    over: dict[str, Domain]
    outputs: Callable[[Job], dict[str, Path]]
    inputs: Inputs = Inputs()
    #: Keyword of the step function -> params key path (with `{wildcard}` or a function of the
    #: params and the job); `*` is every param. A function may give a list of key paths: the step
    #: gets a dict of each path's last key to its value.
    reads: dict[str, str | Callable[[Params, Job], str | list[str]]] = field(default_factory=dict)
    #: Params keys that choose which jobs' outputs the step gathers (the grid, for the tables):
    #: declared to the runners, so a change reruns the step, but not handed to its function.
    selects: tuple[str, ...] = ()
    #: Trains on a device: one `gpu` resource, and a `resources.<resources>` cluster request.
    gpu: bool = False
    resources: str | None = None
    #: Threads a local job may use (0: every core Snakemake was given).
    threads: int = 1
    #: Outputs that are DVC metrics (kept out of DVC's cache, listed under `metrics`).
    metrics: tuple[str, ...] = ()
    #: Outputs whose JSON files (the file, or those in the folder) a job logs to an MLflow run of
    #: its own, with its result's numbers (`shpeft.steps.run_job`); the finetune, sweep_finetune,
    #: study and report steps log runs of their own making.
    logged: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    @property
    def module(self) -> str:
        return f"shpeft.steps.{self.name}"


@dataclass(frozen=True)
class Job:
    """One run of a step: its wildcard values (strings, as they appear in paths), and the
    experiment's layout its files go in."""

    step: Step
    wildcards: dict[str, str]
    layout: Layout

    def __getitem__(self, wildcard: str) -> str:
        return self.wildcards[wildcard]

    @property
    def outputs(self) -> dict[str, Path]:
        return self.step.outputs(self)

    def inputs(self, params: Params) -> dict[str, Path | list[Path]]:
        return {**self.step.inputs.each(params, self), **self.step.inputs.gathered(params, self)}

    def input_files(self, params: Params) -> dict[str, Path | list[Path]]:
        """`inputs`, with the folders of `trees` keys replaced by every file inside them."""
        found = self.inputs(params)
        for key in self.step.inputs.trees:
            found[key] = [f for path in found[key] for f in files_under(Path(path))]
        return found

    @property
    def log(self) -> Path:
        return self.layout.log_file(self.step.name, *self.wildcards.values())

    def command(self, log: str | None = None) -> str:
        """`shpeft <step> --<wildcard> <value> ... --log <log>` (the job's log unless given)."""
        options = [f"--{name} {value}" for name, value in self.wildcards.items()]
        return " ".join(["shpeft", self.step.command, *options, f"--log {log or self.log}"])

    def reads(self, params: Params) -> dict[str, str | list[str]]:
        """Keyword -> the key path (or paths) it reads, for this job."""
        return {
            keyword: path(params, self) if callable(path) else path.format(**self.wildcards)
            for keyword, path in self.step.reads.items()
        }

    def declared_params(self, params: Params) -> list[str]:
        """The key paths this job reads or selects by that the params files state, in order: what
        Snakemake compares and DVC tracks (placeholders such as `${item.dataset}` are kept)."""
        read = [p for v in self.reads(params).values() for p in ([v] if isinstance(v, str) else v)]
        found = dict.fromkeys([*read, *self.step.selects])
        return [p for p in found if "${" in p or p == "*" or params.raw_at(p) is not None]


def files_under(path: Path) -> list[Path]:
    """Every file below a folder, hidden ones aside (a file stands for itself)."""
    if not path.is_dir():
        return [path]
    return sorted(
        f
        for f in path.rglob("*")
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts)
    )


def is_directory(path: Path | str) -> bool:
    return Path(path).suffix not in FILE_SUFFIXES


def jobs(params: Params, step: Step) -> Iterator[Job]:
    """Every job of `step` the params ask for."""

    def expand(names: list[str], fixed: dict[str, str]) -> Iterator[dict[str, str]]:
        if not names:
            yield fixed
            return
        for value in step.over[names[0]].values(params, fixed):
            yield from expand(names[1:], {**fixed, names[0]: str(value)})

    for wildcards in expand(list(step.over), {}):
        yield Job(step, wildcards, params.layout)


def all_jobs(params: Params) -> Iterator[Job]:
    for step in STEPS.values():
        yield from jobs(params, step)


def targets(params: Params) -> list[Path]:
    """Every output of every job: what a full run of the pipeline makes."""
    return [path for job in all_jobs(params) for path in job.outputs.values()]


#: What a value of each wildcard may look like (Snakemake's wildcard constraints, and what the
#: command line accepts): names are the params' safe words, so they cannot cross a `/`.
WILDCARDS = {
    "dataset": NAME_PATTERN.strip("^$"),
    "method": NAME_PATTERN.strip("^$"),
    "variant": NAME_PATTERN.strip("^$"),
    "seed": "[0-9]+",
    "sweep": "|".join(AXES),
    "value": "[0-9][0-9.e+-]*",
}

# The domains of the wildcards.
DATASETS = Domain(lambda p, w: p.grid.datasets, ("grid.datasets",))
METHODS = Domain(lambda p, w: p.grid.methods)
SEEDS = Domain(lambda p, w: p.seeds, ("seeds",))
VARIANTS = Domain(lambda p, w: list(p.masks), ("masks",))
SWEEPS = Domain(lambda p, w: list(p.sweeps.active()))
SWEEP_VALUES = Domain(lambda p, w: getattr(p.sweeps, w["sweep"]).values, ("sweeps.{sweep}.values",))
SWEEP_DATASETS = Domain(
    lambda p, w: p.sweep_datasets(w["sweep"]), ("sweeps.{sweep}.datasets", "grid.datasets")
)
SWEEP_SEEDS = Domain(lambda p, w: getattr(p.sweeps, w["sweep"]).seeds, ("sweeps.{sweep}.seeds",))


def _scoring_seeds(values: Callable[[Params], list[int]]) -> Domain:
    """Scoring seeds (`score.seed`: every run's own, or the one shared); DVC iterates `seeds`
    where they are that list, and gets them written out otherwise."""
    return Domain(
        lambda p, w: values(p),
        lambda p: ("seeds",) if p.score.seed is None and values(p) == p.seeds else (),
    )


SCORE_SEEDS = _scoring_seeds(lambda p: p.score_seeds())
MASK_SEEDS = _scoring_seeds(lambda p: p.mask_seeds())
SWEEP_MASK_SEEDS = Domain(
    lambda p, w: p.sweep_mask_seeds(w["sweep"]),
    lambda p: ("sweeps.{sweep}.seeds",) if p.score.seed is None else (),
)

#: What the steps that compute on a device (besides training) read of `finetune`: where and how
#: strictly (`train.devices.Compute`).
COMPUTE = {"device": "finetune.device", "deterministic": "finetune.deterministic"}


def method_inputs(params: Params, dataset: str, method: str, seed: str) -> dict[str, Path]:
    """Files a method reads besides the data and the backbone: a sparse method's mask (the one of
    the run's seed, `Params.mask_seed`; a reference with hindsight: the oracle of its seed)."""
    if method in params.hindsight_methods():
        return {"mask": params.layout.oracle_mask_file(dataset, seed)}
    variant = getattr(params.methods[method], "mask", None)
    if variant is None:
        return {}
    return {"mask": params.layout.mask_file(dataset, variant, params.mask_seed(seed))}


def _trains_on(job: Job) -> dict[str, Path]:
    """What every job that trains on a dataset reads: its prepared data and the backbone."""
    return {"data": job.layout.data_dir(job["dataset"]), "backbone": job.layout.backbone_dir()}


def _tune_masks(params: Params, dataset: str, method: str) -> dict[str, list[Path]]:
    """A sparse method's masks for each seed its tune job trains with."""
    seeds = params.tune.seeds_of(params.seeds)
    found = [method_inputs(params, dataset, method, str(s)).get("mask") for s in seeds]
    return {"masks": found} if found[0] is not None else {}


def recipe_input(params: Params, dataset: str, method: str) -> dict[str, Path]:
    """A run's tuned recipe, while tuning is on (`tune` step)."""
    if method not in params.tuned_methods():
        return {}
    return {"recipe": params.layout.tuning_file(dataset, method)}


def _raw(params: Params, dataset: str) -> list[Path]:
    """The raw files and folders a dataset is read from, those that exist: one that does not is
    no input, so that its prepare job runs and stops naming it (and the others go on)."""
    return [path for path in raw_inputs(params.datasets[dataset]) if path.exists()]


def _full_run(params: Params, job: Job) -> dict[str, Path]:
    """The study's full fine-tuning run of the job's dataset and seed, and its backbone."""
    run = params.layout.run_dir(job["dataset"], params.study.method, job["seed"])
    return {"run": run, "backbone": job.layout.backbone_dir()}


def _study_masks(params: Params, job: Job) -> dict[str, list[Path]]:
    """The mask file of each of the grid's methods that trains a mask's entries, in grid order."""
    trainers = mask_trainers(params.grid.methods, params.methods)
    return {
        "masks": [method_inputs(params, job["dataset"], m, job["seed"])["mask"] for m in trainers]
    }


def _grid_runs(params: Params, job: Job) -> dict[str, list[Path]]:
    return {"runs": [o for j in jobs(params, FINETUNE) for o in j.outputs.values()]}


def _per_dataset(folder: str, key: str) -> Callable[[Params, Job], dict]:
    """`key`: the `folder` (a `Layout` method) of every dataset of the grid."""
    return lambda p, j: {key: [getattr(j.layout, folder)(d) for d in p.grid.datasets]}


FINETUNE = Step(
    "finetune",
    "train one dataset x method x seed",
    over={"dataset": DATASETS, "method": METHODS, "seed": SEEDS},
    outputs=lambda j: {"run": j.layout.run_dir(j["dataset"], j["method"], j["seed"])},
    inputs=Inputs(
        each=lambda p, j: {
            **_trains_on(j),
            **method_inputs(p, j["dataset"], j["method"], j["seed"]),
            **recipe_input(p, j["dataset"], j["method"]),
        }
    ),
    reads={
        "method_config": "methods.{method}",
        "finetune": "finetune",
    },
    gpu=True,
    resources="finetune",
)

SWEEP_FINETUNE = Step(
    "sweep_finetune",
    "train a sweep's method at one value, on one dataset, with one seed",
    over={"sweep": SWEEPS, "value": SWEEP_VALUES, "dataset": SWEEP_DATASETS, "seed": SWEEP_SEEDS},
    outputs=lambda j: {
        "run": j.layout.sweep_run_dir(j["sweep"], j["value"], j["dataset"], j["seed"])
    },
    inputs=Inputs(
        each=lambda p, j: {
            **_trains_on(j),
            "mask": j.layout.sweep_mask_file(
                j["sweep"], j["value"], j["dataset"], p.mask_seed(j["seed"])
            ),
            **recipe_input(p, j["dataset"], p.sweep_method(j["sweep"])),
        }
    ),
    reads={
        "method": "sweeps.{sweep}.method",
        "method_config": lambda p, j: f"methods.{p.sweep_method(j['sweep'])}",
        "finetune": "finetune",
    },
    gpu=True,
    resources="finetune",
)

STEPS: dict[str, Step] = {
    step.name: step
    for step in [
        Step(
            "prepare",
            "prepare one dataset",
            # One DVC stage per dataset: each has its own raw files as deps.
            over={"dataset": Domain(lambda p, w: p.grid.datasets)},
            outputs=lambda j: {"data": j.layout.data_dir(j["dataset"])},
            inputs=Inputs(each=lambda p, j: {"raw": _raw(p, j["dataset"])}, trees=("raw",)),
            reads={"dataset_config": "datasets.{dataset}"},
            resources="prepare",
            threads=4,
        ),
        Step(
            "backbone",
            "obtain the backbone weights",
            over={},
            outputs=lambda j: {"backbone": j.layout.backbone_dir()},
            reads={"backbone": "backbone", **COMPUTE},
            gpu=True,
            resources="backbone",
            threads=0,
        ),
        Step(
            "score",
            "score the importance of every eligible weight for one dataset",
            over={"dataset": DATASETS, "seed": SCORE_SEEDS},
            outputs=lambda j: {"importance": j.layout.importance_dir(j["dataset"], j["seed"])},
            inputs=Inputs(
                each=lambda p, j: {
                    **_trains_on(j),
                }
            ),
            reads={"score": "score", **COMPUTE},
            gpu=True,
            resources="score",
            logged=("importance",),
        ),
        Step(
            "mask",
            "build one mask variant for one dataset and scoring seed",
            over={"dataset": DATASETS, "variant": VARIANTS, "seed": MASK_SEEDS},
            outputs=lambda j: {
                "mask": j.layout.mask_file(j["dataset"], j["variant"], j["seed"]),
                "stats": j.layout.mask_stats(j["dataset"], j["variant"], j["seed"]),
            },
            inputs=Inputs(
                each=lambda p, j: {"importance": j.layout.importance_dir(j["dataset"], j["seed"])}
            ),
            reads={"mask": "masks.{variant}"},
            logged=("stats",),
        ),
        Step(
            "oracle",
            "mask the entries one full fine-tuning run changed most (for sparse-oracle)",
            over={"dataset": Domain(lambda p, w: p.oracle_datasets()), "seed": SEEDS},
            outputs=lambda j: {
                "mask": j.layout.oracle_mask_file(j["dataset"], j["seed"]),
                "stats": j.layout.oracle_stats(j["dataset"], j["seed"]),
            },
            inputs=Inputs(each=_full_run),
            reads={"study": "study", "mask": lambda p, j: f"masks.{p.study.mask}"},
        ),
        Step(
            "tune",
            "choose one method's recipe for one dataset on the validation split",
            over={"method": Domain(lambda p, w: p.tuned_methods()), "dataset": DATASETS},
            outputs=lambda j: {"tuning": j.layout.tuning_file(j["dataset"], j["method"])},
            inputs=Inputs(
                each=lambda p, j: {
                    **_trains_on(j),
                    **_tune_masks(p, j["dataset"], j["method"]),
                }
            ),
            reads={
                "method_config": "methods.{method}",
                "finetune": "finetune",
                "tune": "tune",
                "seeds": "seeds",
            },
            gpu=True,
            resources="tune",
        ),
        FINETUNE,
        Step(
            "study",
            "measure the sparsity and hybridity of one full fine-tuning run's change",
            over={"dataset": Domain(lambda p, w: p.study_datasets()), "seed": SEEDS},
            outputs=lambda j: {"study": j.layout.study_dir(j["dataset"], j["seed"])},
            inputs=Inputs(
                each=lambda p, j: {
                    **_full_run(p, j),
                    "data": j.layout.data_dir(j["dataset"]),
                    "importance": j.layout.importance_dir(j["dataset"], p.mask_seed(j["seed"])),
                    **_study_masks(p, j),
                }
            ),
            reads={
                "study": "study",
                "mask": lambda p, j: f"masks.{p.study.mask}",
                # The configs of the grid's mask trainers alone: a change to any other method
                # (a LoRA rank) does not rerun the study.
                "methods": lambda p, j: [
                    f"methods.{m}" for m in mask_trainers(p.grid.methods, p.methods)
                ],
                **COMPUTE,
            },
            gpu=True,
            resources="study",
        ),
        Step(
            "aggregate",
            "collect the grid's runs into tables and DVC metrics",
            over={},
            outputs=lambda j: {"tables": j.layout.tables_dir(), "metrics": j.layout.metrics_file()},
            inputs=Inputs(gathered=_grid_runs, roots={"runs": lambda j: j.layout.runs_root()}),
            reads={
                "seeds": "seeds",
                "stats": "stats",
                "tables": "tables",
                "published": "published",
            },
            selects=("grid",),
            metrics=("metrics",),
        ),
        Step(
            "figures",
            "draw the figures",
            over={},
            outputs=lambda j: {"figures": j.layout.figures_dir()},
            inputs=Inputs(
                each=lambda p, j: {"tables": j.layout.tables_dir()},
                gathered=lambda p, j: {
                    **_grid_runs(p, j),
                    **_per_dataset("data_dir", "data")(p, j),
                    "masks": [
                        j.layout.mask_stats(d, v, p.mask_seeds()[0])
                        for d in p.grid.datasets
                        for v in p.masks
                    ],
                },
                roots={
                    "runs": lambda j: j.layout.runs_root(),
                    "data": lambda j: j.layout.data_root(),
                    "masks": lambda j: j.layout.masks_root(),
                },
            ),
            reads={"grid": "grid", "seeds": "seeds", "stats": "stats", "tables_config": "tables"},
        ),
        Step(
            "sweep_mask",
            "build a sweep's mask at one value for one dataset and scoring seed",
            over={
                "sweep": SWEEPS,
                "value": SWEEP_VALUES,
                "dataset": SWEEP_DATASETS,
                "seed": SWEEP_MASK_SEEDS,
            },
            outputs=lambda j: {
                "mask": j.layout.sweep_mask_file(j["sweep"], j["value"], j["dataset"], j["seed"]),
                "stats": j.layout.sweep_mask_stats(j["sweep"], j["value"], j["dataset"], j["seed"]),
            },
            inputs=Inputs(
                each=lambda p, j: {"importance": j.layout.importance_dir(j["dataset"], j["seed"])}
            ),
            reads={"mask": lambda p, j: f"masks.{p.sweep_variant(j['sweep'])}"},
            logged=("stats",),
        ),
        SWEEP_FINETUNE,
        Step(
            "sweep",
            "collect a sweep's runs into its table and figure",
            over={"sweep": SWEEPS},
            outputs=lambda j: {"summary": j.layout.sweep_summary_dir(j["sweep"])},
            inputs=Inputs(
                gathered=lambda p, j: {
                    "runs": [
                        o
                        for run in jobs(p, SWEEP_FINETUNE)
                        if run["sweep"] == j["sweep"]
                        for o in run.outputs.values()
                    ]
                },
                roots={"runs": lambda j: j.layout.sweep_points_dir(j["sweep"])},
            ),
            reads={"sweep_config": "sweeps.{sweep}", "stats": "stats"},
        ),
        Step(
            "report",
            "write the reproducibility report",
            over={},
            outputs=lambda j: {"report": j.layout.report_dir()},
            inputs=Inputs(
                each=lambda p, j: {
                    "tables": j.layout.tables_dir(),
                    "figures": j.layout.figures_dir(),
                    "backbone": j.layout.backbone_dir(),
                },
                gathered=lambda p, j: {
                    "sweeps": [j.layout.sweep_summary_dir(s) for s in p.sweeps.active()],
                    "study": [
                        j.layout.study_dir(d, s) for d in p.study_datasets() for s in p.seeds
                    ],
                    **_per_dataset("data_dir", "data")(p, j),
                    "importance": [
                        j.layout.importance_dir(d, s)
                        for d in p.grid.datasets
                        for s in p.score_seeds()
                    ],
                    **_grid_runs(p, j),
                },
                roots={
                    "sweeps": None,
                    "study": lambda j: j.layout.study_root(),
                    "data": lambda j: j.layout.data_root(),
                    "importance": lambda j: j.layout.importance_root(),
                    "runs": lambda j: j.layout.runs_root(),
                },
            ),
            reads={"params": "*"},
        ),
    ]
}
