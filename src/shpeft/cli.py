"""The command line: parse arguments, load params, call one function per pipeline step.

Every Snakemake rule and DVC stage runs exactly one of these commands. Output locations come from
`shpeft.paths`, so a command needs only the names of what it works on.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from shpeft import paths
from shpeft.errors import ShpeftError
from shpeft.params import DEFAULT_PARAMS, field_names, load_params

log = logging.getLogger("shpeft")


def cmd_prepare(args: argparse.Namespace, params: dict) -> None:
    from shpeft.data.prepare import prepare

    if args.dataset not in params["datasets"]:
        raise ShpeftError(f"datasets: no dataset named '{args.dataset}'")
    prepare(args.dataset, params["datasets"][args.dataset], paths.data_dir(args.dataset))


def cmd_backbone(args: argparse.Namespace, params: dict) -> None:
    from shpeft.devices import acquire_gpu

    acquire_gpu()
    from shpeft.backbone import BackboneConfig, build_backbone
    from shpeft.params import build

    build_backbone(build(BackboneConfig, params["backbone"]), paths.backbone_dir())


def cmd_score(args: argparse.Namespace, params: dict) -> None:
    from shpeft.devices import acquire_gpu

    acquire_gpu()
    from shpeft.importance import ScoreConfig, score_dataset
    from shpeft.params import build

    score_dataset(
        paths.data_dir(args.dataset),
        paths.backbone_dir(),
        build(ScoreConfig, params.get("score", {})),
        paths.importance_dir(args.dataset),
    )


def cmd_mask(args: argparse.Namespace, params: dict) -> None:
    from shpeft.masks import MaskConfig, build_mask
    from shpeft.params import build

    if args.sweep:
        point = sweep_point(args, params, "variant")
        variant, out = point.variant, paths.sweep_mask_file(point.sweep, point.value, args.dataset)
        params = point.params
    else:
        variant, out = required(args, "variant"), paths.mask_file(args.dataset, args.variant)
    if variant not in params.get("masks", {}):
        raise ShpeftError(f"masks: no mask variant named '{variant}'")
    build_mask(paths.importance_dir(args.dataset), build(MaskConfig, params["masks"][variant]), out)


def cmd_finetune(args: argparse.Namespace, params: dict) -> None:
    from shpeft.devices import acquire_gpu

    if args.sweep:
        point = sweep_point(args, params, "method")
        method, label = point.method, f"{point.sweep}={point.value}"
        out = paths.sweep_run_dir(point.sweep, point.value, args.dataset, args.seed)
        inputs = {"mask": paths.sweep_mask_file(point.sweep, point.value, args.dataset)}
    else:
        method, label = required(args, "method"), None
        if method not in params["methods"]:
            raise ShpeftError(f"methods: no method named '{method}'")
        out = paths.run_dir(args.dataset, method, args.seed)
        inputs = paths.method_inputs(args.dataset, params["methods"][method])
    acquire_gpu()
    from shpeft.finetune import finetune

    finetune(
        args.dataset,
        method,
        args.seed,
        params,
        data_dir=paths.data_dir(args.dataset),
        backbone_dir=paths.backbone_dir(),
        out_dir=out,
        inputs=inputs,
        label=label,
    )


def required(args: argparse.Namespace, option: str) -> str:
    value = getattr(args, option)
    if value is None:
        raise ShpeftError(f"--{option} is required (or --sweep)")
    return value


def sweep_point(args: argparse.Namespace, params: dict, implied: str):
    """The sweep point of `--sweep`, which implies the method and its mask variant."""
    from shpeft.sweeps import point

    found = point(params, args.sweep)
    given = getattr(args, implied)
    if given is not None and given != getattr(found, implied):
        raise ShpeftError(
            f"--{implied} {given}: sweep '{found.sweep}' trains {found.method} "
            f"(mask variant {found.variant}); leave --{implied} out"
        )
    return found


def cmd_sweep(args: argparse.Namespace, params: dict) -> None:
    from shpeft.sweeps import summarise

    summarise(params, args.name)


def cmd_merge(args: argparse.Namespace, params: dict) -> None:
    from shpeft.export import merge_run

    if args.method not in params["methods"]:
        raise ShpeftError(f"methods: no method named '{args.method}'")
    out = merge_run(
        paths.run_dir(args.dataset, args.method, args.seed),
        paths.backbone_dir(),
        params["methods"][args.method],
        args.out,
    )
    print(f"merged model written to {out}")


def cmd_bench_train_step(args: argparse.Namespace, params: dict) -> None:
    from shpeft.bench import TrainStepBench, table, train_step

    options = {name: getattr(args, name) for name in field_names(TrainStepBench)}
    report = train_step(
        TrainStepBench(**{k: v for k, v in options.items() if v is not None}), paths.bench_dir()
    )
    print(table(report))
    print(f"k = {report['k']}; sparse step / floor step = {report['sparse_step_vs_floor']:.3f}")
    print(f"written to {report['file']}")


def cmd_bench_loader(args: argparse.Namespace, params: dict) -> None:
    from shpeft.bench import LoaderBench, loader, loader_table

    options = {name: getattr(args, name) for name in field_names(LoaderBench)}
    if options["stored_sizes"] is not None:
        options["stored_sizes"] = tuple(options["stored_sizes"])
    report = loader(
        LoaderBench(**{k: v for k, v in options.items() if v is not None}), paths.bench_dir()
    )
    print(loader_table(report))
    print(f"written to {report['file']}")


def cmd_aggregate(args: argparse.Namespace, params: dict) -> None:
    from shpeft.aggregate import aggregate

    aggregate(params)


def cmd_figures(args: argparse.Namespace, params: dict) -> None:
    from shpeft.figures import figures

    figures(params)


def cmd_tracking_init(args: argparse.Namespace, params: dict) -> None:
    from shpeft.tracking import init_tracking, tracking_uri

    init_tracking(params.get("tracking", {}).get("experiment", "shpeft"))
    print(f"MLflow store ready: {tracking_uri()}")


def cmd_report(args: argparse.Namespace, params: dict) -> None:
    from shpeft.report import write_report

    write_report(params, [str(f) for f in params_files(args)])


def cmd_summary(args: argparse.Namespace, params: dict) -> None:
    from shpeft.tracking import tracking_uri

    print(paths.main_table(".md").read_text())
    print(f"Tables:  {paths.tables_dir()}/  (main: .csv .md .tex; detail, summary, comparisons)")
    print(f"Figures: {paths.figures_dir()}/")
    print(f"Report:  {paths.report_dir()}/  (REPORT.md, report.html)")
    print(f"MLflow:  {tracking_uri()}  (open with: make mlflow-ui)")


Command = Callable[[argparse.Namespace, dict], None]


def parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    main = argparse.ArgumentParser(prog="shpeft", description=__doc__.splitlines()[0])
    sub = main.add_subparsers(dest="command", required=True)
    commands: dict[str, Command] = {}

    def add(
        name: str, func: Command, help: str, parent=sub, reads_params: bool = True
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help)
        if reads_params:
            p.add_argument(
                "--params",
                action="append",
                type=Path,
                help="params file; repeat to layer (default: $SHPEFT_PARAMS, else params.yaml)",
            )
        p.add_argument("--log", type=Path, help="also write the log to this file")
        p.set_defaults(command=name, reads_params=reads_params)
        commands[name] = func
        return p

    add("prepare", cmd_prepare, "prepare one dataset").add_argument("--dataset", required=True)
    add("backbone", cmd_backbone, "obtain the backbone weights")
    add("score", cmd_score, "score the importance of every eligible weight").add_argument(
        "--dataset", required=True
    )
    point = "a point of a sweep, SWEEP=VALUE (e.g. budget=0.001): implies the method and mask"
    mask = add("mask", cmd_mask, "build one mask variant for one dataset")
    mask.add_argument("--dataset", required=True)
    mask.add_argument("--variant")
    mask.add_argument("--sweep", help=point)
    ft = add("finetune", cmd_finetune, "train one dataset x method x seed")
    ft.add_argument("--dataset", required=True)
    ft.add_argument("--method")
    ft.add_argument("--seed", required=True, type=int)
    ft.add_argument("--sweep", help=point)
    add("sweep", cmd_sweep, "collect a sweep's runs into its table and figure").add_argument(
        "--name", required=True, help="budget or rho"
    )
    merge = add("merge", cmd_merge, "write a run's tuned model as one dense weights file")
    merge.add_argument("--dataset", required=True)
    merge.add_argument("--method", required=True)
    merge.add_argument("--seed", required=True, type=int)
    merge.add_argument("--out", required=True, type=Path, help="the .safetensors file to write")
    bench = sub.add_parser("bench", help="benchmarks (print a table, write JSON)")
    benches = bench.add_subparsers(dest="bench", required=True)
    step = add("train-step", cmd_bench_train_step, "cost of one training step", benches, False)
    # Defaults live in shpeft.bench.TrainStepBench (not imported here: it needs torch).
    for option, kind in (("model", str), ("img-size", int), ("batch-size", int)):
        step.add_argument(f"--{option}", type=kind)
    for option, kind in (("threads", int), ("budget", float), ("warmup", int), ("steps", int)):
        step.add_argument(f"--{option}", type=kind)
    step.add_argument("--seed", type=int)
    step.add_argument("--device", choices=["auto", "cpu", "cuda"])
    step.add_argument("--bf16", action="store_true", default=None, help="bf16 autocast")
    load = add("loader", cmd_bench_loader, "images per second to a ready batch", benches, False)
    # Defaults live in shpeft.bench.LoaderBench.
    for option in ("images", "img-size", "batch-size", "threads", "warmup", "batches", "seed"):
        load.add_argument(f"--{option}", type=int)
    load.add_argument("--stored-sizes", type=int, nargs="+", help="sizes the data are stored at")
    load.add_argument("--target", type=float, help="images per second to reach")
    load.add_argument("--device", choices=["auto", "cpu", "cuda"])
    methods = add("methods", cmd_methods, "what each method of the grid trains, and how much")
    methods.add_argument("--model", help="a timm model name (default: params backbone.model)")
    methods.add_argument("--model-args", help="JSON keyword arguments for the model")
    add("aggregate", cmd_aggregate, "collect runs into tables and DVC metrics")
    add("figures", cmd_figures, "draw the figures")
    add("report", cmd_report, "write the reproducibility report")
    add("tracking-init", cmd_tracking_init, "create the MLflow store and experiment")
    add("summary", cmd_summary, "print the summary table and where outputs are")
    return main, commands


def cmd_methods(args: argparse.Namespace, params: dict) -> None:
    import json

    import pandas as pd
    import timm

    from shpeft.methods.overview import overview

    backbone = params["backbone"]
    model_args = (
        json.loads(args.model_args) if args.model_args else backbone.get("model_args") or {}
    )
    name = args.model or backbone["model"]
    try:
        model = timm.create_model(name, pretrained=False, num_classes=2, **model_args)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ShpeftError(f"--model {name}: cannot build it ({exc})") from None
    frame = pd.DataFrame(overview(params, model))
    print(f"Trainable parameters on {name} {model_args or ''} (head apart):\n")
    print(frame.to_markdown(index=False, floatfmt=".2e", intfmt=","))


def params_files(args: argparse.Namespace) -> list:
    """The layered params files: `--params`, else those the workflow set, else params.yaml."""
    return args.params or params_from_env() or list(DEFAULT_PARAMS)


def params_from_env() -> list[str]:
    """Layered params files set by the Snakemake workflow (`SHPEFT_PARAMS`, os.pathsep apart)."""
    return [f for f in os.environ.get("SHPEFT_PARAMS", "").split(os.pathsep) if f]


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
    main_parser, commands = parser()
    args = main_parser.parse_args(argv)
    setup_logging(args.log)
    try:
        params = load_params(params_files(args)) if args.reads_params else {}
        commands[args.command](args, params)
    except ShpeftError as exc:
        log.error("shpeft %s: %s", args.command, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
