# Helpers shared by the rules: params validation, wildcard constraints, command arguments, inputs.
import os
from itertools import product

from shpeft import paths
from shpeft.errors import ShpeftError
from shpeft.params import run_methods, validate
from shpeft.sweeps import point as sweep_point

try:
    validate(config, origin="config (params.yaml + --configfile)")
except ShpeftError as exc:
    raise WorkflowError(str(exc)) from None


# Names are validated as safe words; constraints keep wildcards from matching across `/`.
wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_-]*",
    method="[A-Za-z0-9][A-Za-z0-9_-]*",
    seed="[0-9]+",
    variant="[A-Za-z0-9][A-Za-z0-9_-]*",
    sweep="budget|rho",
    value="[0-9][0-9.e+-]*",


# Commands read the same layered params as this workflow: params.yaml, then each --configfile.
# An environment variable rather than an argument, so commands (and DVC's) stay the same.
os.environ["SHPEFT_PARAMS"] = os.pathsep.join(
    os.path.relpath(f) for f in ["params.yaml", *workflow.overwrite_configfiles]
)


envvars:
    "SHPEFT_PARAMS",


CONDA_ENV = "../../environment.yml"
GRID = list(product(config["grid"]["datasets"], run_methods(config), config["seeds"]))


def log_path(step, *names):
    return str(paths.log_file(step, *names))


def data_dirs():
    return [str(paths.data_dir(d)) for d in config["grid"]["datasets"]]


def importance_dirs():
    return [str(paths.importance_dir(d)) for d in config["grid"]["datasets"]]


def mask_files():
    return [
        str(paths.mask_file(d, v))
        for d in config["grid"]["datasets"]
        for v in config.get("masks", {})
    ]


def mask_params(wildcards):
    return config["masks"][wildcards.variant]


def run_dirs():
    return [str(paths.run_dir(d, m, s)) for d, m, s in GRID]


def dataset_params(wildcards):
    return config["datasets"][wildcards.dataset]


def method_params(wildcards):
    return config["methods"][wildcards.method]


def sweep_method(wildcards):
    return config["sweeps"][wildcards.sweep]["method"]


def sweep_method_params(wildcards):
    return config["methods"][sweep_method(wildcards)]


def sweep_mask_params(wildcards):
    """The mask config of the point itself, so a change its value overrides reruns nothing."""
    found = sweep_point(config, f"{wildcards.sweep}={wildcards.value}")
    return dict(sorted(found.params["masks"][found.variant].items()))  # as compared: in order


def sweep_run_dirs(wildcards):
    sweep = config["sweeps"][wildcards.sweep]
    return [
        str(paths.sweep_run_dir(wildcards.sweep, str(value), dataset, seed))
        for value, dataset, seed in product(
            sweep["values"], sweep["datasets"], sweep["seeds"]
        )
    ]


def sweep_summaries():
    """The summary of every sweep with values (Python's str() of a value names its folder)."""
    return [
        str(paths.sweep_summary_dir(name))
        for name, sweep in config.get("sweeps", {}).items()
        if sweep["values"]
    ]


def finetune_inputs(wildcards):
    """Data and backbone, and a sparse method's mask."""
    return {
        "data": paths.data_dir(wildcards.dataset),
        "backbone": paths.backbone_dir(),
        **paths.method_inputs(wildcards.dataset, method_params(wildcards)),
    }


onstart:
    shell("shpeft tracking-init")


# Record the outputs in dvc.lock, so that `dvc status` agrees (only for the params DVC reads).
onsuccess:
    if not workflow.overwrite_configfiles:
        shell(
            "dvc commit --force --quiet || echo 'dvc commit failed: run `make commit` to retry'"
        )
