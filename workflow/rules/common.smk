# The rules' helpers: params validation, and each step of shpeft.dag as a rule's input, output,
# log, params, resources and shell command (the same table dvc.yaml is generated from).
import os

from shpeft import dag
from shpeft.errors import ShpeftError
from shpeft.params import load

# Commands read the same layered params as this workflow: params.yaml, then each --configfile.
# An environment variable rather than an argument, so commands (and DVC's) stay the same.
PARAMS_FILES = [
    os.path.relpath(f) for f in ["params.yaml", *workflow.overwrite_configfiles]
]
try:
    PARAMS = load(PARAMS_FILES)
except ShpeftError as exc:
    raise WorkflowError(str(exc)) from None
if PARAMS.raw != config:
    raise WorkflowError(
        "--config values do not reach the pipeline's commands: put them in a file and layer it "
        "with --configfile"
    )
os.environ["SHPEFT_PARAMS"] = os.pathsep.join(PARAMS_FILES)


envvars:
    "SHPEFT_PARAMS",


# Names are validated as safe words; constraints keep wildcards from matching across `/`.
wildcard_constraints:
    **dag.WILDCARDS,


CONDA_ENV = "../../environment.yml"


def pattern_job(step, form="{{{}}}"):
    """The step's job with each wildcard written as `form` (Snakemake's `{dataset}`)."""
    return dag.Job(step, {w: form.format(w) for w in step.over}, PARAMS.layout)


def job_of(step, wildcards):
    return dag.Job(step, {w: wildcards[w] for w in step.over}, PARAMS.layout)


def step_inputs(step):
    def inputs(wildcards):
        found = job_of(step, wildcards).input_files(PARAMS)
        return {
            k: [str(p) for p in v] if isinstance(v, list) else str(v)
            for k, v in found.items()
        }

    return inputs


def step_outputs(step):
    return {
        name: directory(str(path)) if dag.is_directory(path) else str(path)
        for name, path in pattern_job(step).outputs.items()
    }


def step_params(step):
    """The params sections the step reads, as the files state them (Snakemake reruns a job
    when they change); keys sorted, since Snakemake compares their repr."""

    def sections(wildcards):
        job = job_of(step, wildcards)
        return {
            path: PARAMS.raw_at(path) for path in sorted(job.declared_params(PARAMS))
        }

    return sections


def step_resources(step):
    requests = {}
    if step.gpu:
        requests["gpu"] = 1
    if step.resources:
        request = getattr(PARAMS.resources, step.resources)
        requests.update(runtime=request.runtime, mem_mb=request.mem_mb)
    return requests


def step_command(step):
    """The job's `shpeft <step> ...` command, the same string as its DVC stage's."""
    return lambda wildcards: job_of(step, wildcards).command()


onstart:
    shell("shpeft tracking-init")


# Record the outputs in dvc.lock, so that `dvc status` agrees (only for the params DVC reads).
onsuccess:
    if not workflow.overwrite_configfiles:
        shell(
            "dvc commit --force --quiet || echo 'dvc commit failed: run `make commit` to retry'"
        )
