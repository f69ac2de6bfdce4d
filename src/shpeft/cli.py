"""The command line: parse arguments, load params, dispatch to one function per command.

Every Snakemake rule and DVC stage runs one pipeline-step command, made from `shpeft.dag`: its
options are the step's wildcards, and the step's function receives exactly the params sections
the DAG says it reads. The other commands are tools around the pipeline.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from shpeft import dag, paths
from shpeft.errors import ShpeftError

log = logging.getLogger("shpeft")


def params_files(args: argparse.Namespace) -> list[str]:
    """The layered params files: `--params`, else those the workflow set, else params.yaml."""
    from_env = [f for f in os.environ.get("SHPEFT_PARAMS", "").split(os.pathsep) if f]
    return [str(f) for f in args.params] if args.params else from_env or ["params.yaml"]


def load(args: argparse.Namespace):
    from shpeft.dvc_yaml import check_current
    from shpeft.params import load as load_params
    from shpeft.tracking import configure

    params = load_params(params_files(args))
    check_current(params)
    configure(params.tracking, params.experiment)
    return params


def run_step(step: dag.Step, args: argparse.Namespace) -> None:
    """One job of a pipeline step (on a free GPU if it trains), in this process."""
    from shpeft.steps import run_job

    params = load(args)
    if step.gpu:
        from shpeft.train.devices import acquire_gpu

        acquire_gpu()
    run_job(params, step.name, **{name: getattr(args, name) for name in step.over})


def cmd_methods(args: argparse.Namespace) -> None:
    import pandas as pd

    from shpeft.methods.overview import overview, overview_model

    params = load(args)
    model_args = json.loads(args.model_args) if args.model_args else None
    cfg, model = overview_model(params.backbone, args.model, model_args)
    frame = pd.DataFrame(overview(params, model))
    print(f"Trainable parameters on {cfg.model} {cfg.create_args or ''} (head apart):\n")
    print(frame.to_markdown(index=False, floatfmt=".2e", intfmt=","))


def cmd_merge(args: argparse.Namespace) -> None:
    from shpeft.export import merge_run

    params = load(args)
    run = params.layout.run_dir(args.dataset, args.method, args.seed)
    method = params.at(f"methods.{args.method}")
    out = merge_run(run, params.layout.backbone_dir(), method, args.out)
    print(f"merged model written to {out}")


def cmd_bench(args: argparse.Namespace) -> None:
    from shpeft.bench import run_bench

    run_bench(args.bench, {k: v for k, v in vars(args).items() if k.startswith("opt_")})


def cmd_fetch(args: argparse.Namespace) -> None:
    from shpeft.fetch import fetch

    for record in fetch(load(args)):
        print(f"{record['what']}: {record['file']} (sha256 {record['sha256']})")


def cmd_tracking_init(args: argparse.Namespace) -> None:
    from shpeft.tracking import init_tracking, runs_page, tracking_uri

    params = load(args)
    experiment_id = init_tracking(params.experiment)
    print(f"MLflow store ready: {tracking_uri()}")
    if args.ui:
        print(f"Runs of '{params.experiment}': {runs_page(args.ui, experiment_id)}")


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from shpeft.bench.gpu_check import gpu_check

    return gpu_check()


def cmd_summary(args: argparse.Namespace) -> None:
    from shpeft.tracking import tracking_uri

    params = load(args)
    layout = params.layout
    table = layout.table(paths.main_table(".md"))
    if not table.is_file():
        raise ShpeftError(f"{table}: not made yet (run the pipeline for '{params.experiment}')")
    print(table.read_text())
    print(f"Tables:  {layout.tables_dir()}/  (main: .csv .md .tex; detail, summary, comparisons)")
    print(f"Figures: {layout.figures_dir()}/")
    if params.study_datasets():
        print(f"Study:   {layout.study_root()}/<dataset>/seed<s>/  (sparsity, hybridity)")
    print(f"Report:  {layout.report_dir()}/  (REPORT.md, report.html)")
    print(f"MLflow:  {tracking_uri()}, experiment '{params.experiment}' (make mlflow-ui)")


def cmd_schema(args: argparse.Namespace) -> None:
    from shpeft.reference import generate

    for path in generate():
        print(f"written: {os.path.relpath(path)}")


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    from shpeft.dvc_yaml import write

    print(f"written: {write(load(args))}")


#: A command; one that returns an int gives the exit status.
Command = Callable[[argparse.Namespace], int | None]


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="shpeft", description=__doc__.splitlines()[0])
    sub = main.add_subparsers(dest="command", required=True)

    def add(name: str, func: Command, help: str, reads_params: bool = True, parent=sub):
        p = parent.add_parser(name, help=help)
        if reads_params:
            p.add_argument(
                "--params",
                action="append",
                type=Path,
                help="params file; repeat to layer (default: $SHPEFT_PARAMS, else params.yaml)",
            )
        p.add_argument("--log", type=Path, help="also write the log to this file")
        p.set_defaults(func=func)
        return p

    for step in dag.STEPS.values():
        p = add(step.command, lambda args, step=step: run_step(step, args), step.help)
        for wildcard in step.over:
            p.add_argument(f"--{wildcard}", required=True, type=wildcard_value(wildcard))
    methods = add("methods", cmd_methods, "what each method of the grid trains, and how much")
    methods.add_argument("--model", help="a timm model name (default: params backbone.model)")
    methods.add_argument("--model-args", help="JSON keyword arguments for the model")
    merge = add("merge", cmd_merge, "write a run's tuned model as one dense weights file")
    merge.add_argument("--dataset", required=True)
    merge.add_argument("--method", required=True)
    merge.add_argument("--seed", required=True, type=int)
    merge.add_argument("--out", required=True, type=Path, help="the .safetensors file to write")
    add_bench_commands(sub.add_parser("bench", help="benchmarks (print a table, write JSON)"), add)
    add("fetch", cmd_fetch, "download hub weights and datasets, for compute nodes without internet")
    init = add("tracking-init", cmd_tracking_init, "create the MLflow store and experiment")
    init.add_argument("--ui", metavar="URL", help="also print the experiment's runs page there")
    add("summary", cmd_summary, "print the summary table and where outputs are")
    add("gpu-check", cmd_gpu_check, "acceptance checks on a CUDA machine (exit 3: no CUDA)", False)
    add("schema", cmd_schema, "regenerate the params schema and config/README.md", False)
    add("dvc-yaml", cmd_dvc_yaml, "regenerate dvc.yaml from shpeft.dag and params.yaml")
    return main


def add_bench_commands(bench: argparse.ArgumentParser, add) -> None:
    """`bench train-step`, `bench loader` and `bench prepare`; defaults live in `shpeft.bench`."""
    benches = bench.add_subparsers(dest="bench", required=True)
    step = add("train-step", cmd_bench, "cost of one training step", False, benches)
    for option, kind in (("model", str), ("img-size", int), ("batch-size", int)):
        step.add_argument(f"--{option}", type=kind, dest=f"opt_{option.replace('-', '_')}")
    for option, kind in (("threads", int), ("budget", float), ("warmup", int), ("steps", int)):
        step.add_argument(f"--{option}", type=kind, dest=f"opt_{option}")
    step.add_argument("--seed", type=int, dest="opt_seed")
    step.add_argument("--device", choices=["auto", "cpu", "cuda"], dest="opt_device")
    step.add_argument("--bf16", action="store_true", default=None, dest="opt_bf16")
    load = add("loader", cmd_bench, "images per second to a ready batch", False, benches)
    for option in ("images", "img-size", "batch-size", "threads", "warmup", "batches", "seed"):
        load.add_argument(f"--{option}", type=int, dest=f"opt_{option.replace('-', '_')}")
    load.add_argument(
        "--stored-sizes", type=int, nargs="+", dest="opt_stored_sizes", help="stored sizes"
    )
    load.add_argument("--target", type=float, dest="opt_target", help="images per second to reach")
    load.add_argument("--device", choices=["auto", "cpu", "cuda"], dest="opt_device")
    prep = add("prepare", cmd_bench, "peak memory of preparing a large archive", False, benches)
    prep.add_argument("--gigabytes", type=float, dest="opt_gigabytes", help="pixels to generate")
    prep.add_argument("--stored-size", type=int, choices=[28, 64, 128, 224], dest="opt_stored_size")
    for option in ("img-size", "threads", "seed"):
        prep.add_argument(f"--{option}", type=int, dest=f"opt_{option.replace('-', '_')}")


def wildcard_value(wildcard: str) -> Callable[[str], str]:
    """An argparse type accepting what the DAG's wildcard may be (`dag.WILDCARDS`), as written."""
    pattern = dag.WILDCARDS[wildcard]

    def check(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {wildcard} ({pattern})")
        return text

    return check


def setup_logging(log_file: Path | None) -> None:
    """Log the package's messages to stderr and, if asked, to a file (the job's log)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in log.handlers[:]:
        log.removeHandler(handler)
        handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.log)
    try:
        return args.func(args) or 0
    except ShpeftError as exc:
        log.error("shpeft %s: %s", args.command, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
