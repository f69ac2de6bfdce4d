"""Benchmarks: each prints a Markdown table and writes JSON under `results/bench/`."""

from __future__ import annotations

from typing import Any

from shpeft import paths


def run_bench(name: str, options: dict[str, Any]) -> None:
    """Run benchmark `name` with the options given on the command line (`opt_<field>`), the
    others at their defaults (the fields of its config dataclass)."""
    given = {k.removeprefix("opt_"): v for k, v in options.items() if v is not None}
    if name == "train-step":
        from shpeft.bench.train_step import TrainStepBench, table, train_step

        report = train_step(TrainStepBench(**given), paths.bench_dir())
        print(table(report))
        print(
            f"k = {report['k']}; sparse step / floor step = {report['sparse_step_vs_floor']:.3f}; "
            f"deterministic / sparse = {report['deterministic_step_vs_sparse']:.3f}"
        )
    elif name == "prepare":
        from shpeft.bench.prepare import PrepareBench, prepare_memory, prepare_table

        report = prepare_memory(PrepareBench(**given), paths.bench_dir())
        print(prepare_table(report))
    else:
        from shpeft.bench.loader import LoaderBench, loader, loader_table

        if "stored_sizes" in given:
            given["stored_sizes"] = tuple(given["stored_sizes"])
        report = loader(LoaderBench(**given), paths.bench_dir())
        print(loader_table(report))
    print(f"written to {report['file']}")
