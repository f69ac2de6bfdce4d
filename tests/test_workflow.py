"""End to end: Snakemake and DVC run the same DAG on the tiny params; reruns are exact."""

from __future__ import annotations

import io
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from commands import job_stats, run
from conftest import LAYOUT, ROOT, use_tiny_params
from live import NO_BROWSER, open_page
from shpeft.params import load
from shpeft.runs import RunFolder

pytestmark = pytest.mark.slow


def sh(*args: str, check: bool = True, **env) -> subprocess.CompletedProcess:
    return run(*args, env={**os.environ, **env}, check=check)


def snakemake(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh("snakemake", "--cores", "2", "--resources", "gpu=2", *args, check=check)


def planned_jobs(*args: str) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when there is nothing to do)."""
    return job_stats(snakemake("--dry-run", *args).stdout)


def test_snakemake_then_dvc_agree_and_rerun_exactly(project):
    use_tiny_params(project, "tune: {enabled: true}\n")
    snakemake()
    summary = pd.read_csv(LAYOUT.table("summary.csv"))
    runs = summary[~summary["seed"].isin(["mean", "std"])]
    assert len(runs) == 8
    assert set(runs["method"]) == {"full", "linear", "sh-peft", "sparse-oracle"}
    assert (project / LAYOUT.run_dir("tiny_us", "sh-peft", 0) / "delta.safetensors").is_file()
    figures = project / LAYOUT.root / "figures"
    kinds = (
        "accuracy_by_method",
        "pareto",
        "training_curves",
        "trainable_locations",
        "hybridity",
        "critical_difference",
    )
    per_dataset = [f"{k}_{d}" for k in ("confusion", "failures") for d in ("tiny_us", "tiny_derm")]
    for name in (*kinds, *per_dataset):
        with Image.open(figures / f"{name}.png") as image:
            low, high = image.convert("L").getextrema()
            assert image.width > 200 and low < high, name  # an image, and not a blank one
        assert (figures / f"{name}.pdf").read_bytes().startswith(b"%PDF-"), name
    tables = project / LAYOUT.root / "tables"
    latex = (tables / "main.tex").read_text()
    assert latex.count(r"\\") == 1 + 4 and r"\bottomrule" in latex  # header + 4 methods
    assert len(pd.read_csv(tables / "detail.csv")) == 8
    assert "reference" in (tables / "main.md").read_text()  # sparse-oracle, outside the tests
    report = (project / LAYOUT.root / "report" / "REPORT.md").read_text()
    commit = sh("git", "rev-parse", "HEAD").stdout.strip()
    assert f"git commit: `{commit}`" in report
    for dataset in ("tiny_us", "tiny_derm"):
        manifest = json.loads(
            (project / LAYOUT.root / "data" / dataset / "manifest.json").read_text()
        )
        assert all(digest in report for digest in manifest["arrays_sha256"].values())
    for sweep, values in (("budget", [0.001, 0.004]), ("rho", [0.0, 1.0])):
        summary_dir = project / LAYOUT.root / "sweeps" / sweep / "summary"
        table = pd.read_csv(summary_dir / "sweep.csv")
        assert list(table["value"]) == values and table["accuracy"].between(0, 1).all()
        assert (summary_dir / "sweep.pdf").read_bytes().startswith(b"%PDF-")
        with Image.open(summary_dir / "sweep.png") as image:
            assert image.convert("L").getextrema()[0] < 255, sweep  # not blank
        assert f"Sweep of `{sweep}`" in report
    html = (project / LAYOUT.root / "report" / "report.html").read_text()
    studies = sorted((project / LAYOUT.root / "study").glob("*/seed0/*.png"))
    assert len(studies) == 2 * 2  # sparsity and hybridity per dataset
    assert all(f"### {d}, seed 0, " in report for d in ("tiny_us", "tiny_derm"))
    # The figures step's, each sweep's and each study's.
    assert html.count("data:image/png;base64,") == len(list(figures.glob("*.png"))) + 2 + 4
    if NO_BROWSER:  # the rest of this test needs none
        print(f"report.html not opened in a browser: {NO_BROWSER}")
    else:  # in a real browser: every figure loads, no console error; a screenshot is left
        loaded, errors = open_page(project / LAYOUT.root / "report" / "report.html", "report")
        assert len(loaded) == html.count("data:image/png;base64,") and all(loaded.values())
        assert errors == []
    assert (project / "mlflow.db").is_file()
    # The workflow's onsuccess recorded everything in dvc.lock.
    assert "up to date" in sh("dvc", "status").stdout
    assert planned_jobs() == {}
    # An overlay that only narrows the grid reruns the tables, not the backbone or any run.
    (project / "narrow.yaml").write_text("grid: {datasets: [tiny_us]}\n")
    assert planned_jobs("--configfile", "narrow.yaml") == {
        "aggregate": 1,
        "figures": 1,
        "report": 1,
        "all": 1,
    }
    # A change to the hybrid mask reruns its masks, the tuning and runs trained on it and the
    # sweeps of its method (which read the whole variant, as their DVC stages do), nothing else.
    (project / "budget.yaml").write_text("masks: {hybrid: {budget: 0.003}}\n")
    # The oracle takes the hybrid mask's budget: sparse-oracle and the study rerun too.
    assert planned_jobs("--configfile", "budget.yaml") == {
        "mask": 2,
        "oracle": 2,
        "tune": 4,
        "finetune": 4,
        "study": 2,
        "sweep_mask": 4,
        "sweep_finetune": 4,
        "sweep": 2,
        "aggregate": 1,
        "figures": 1,
        "report": 1,
        "all": 1,
    }
    # A change of the tuning grid reruns exactly the tune jobs, the runs that train with their
    # choice and what follows them, in both tools; a learning-rate change does the same.
    methods = ("full", "linear", "sh-peft", "sparse-oracle")
    pairs = [(m, d) for m in methods for d in ("tiny_us", "tiny_derm")]
    tuning = project / LAYOUT.tuning_file("tiny_us", "linear")
    first = json.loads(tuning.read_text())["chosen"]["recipe"]
    on = "tune: {enabled: true}\n"  # over the tiny file's `enabled: false`, layered again
    for change in (
        on + "finetune: {lr: 0.01}\n",
        "tune: {enabled: true, grid: {lr_scale: [0.25, 4.0]}}\n",
    ):
        use_tiny_params(project, change)
        # The full runs rerun, so the oracle masks and the studies that read them follow.
        assert planned_jobs() == {
            "tune": 8,
            "finetune": 8,
            "oracle": 2,
            "study": 2,
            "sweep_finetune": 4,
            "sweep": 2,
            "aggregate": 1,
            "figures": 1,
            "report": 1,
            "all": 1,
        }, change
        changed = set(re.findall(r"^(\S+):", sh("dvc", "status").stdout, re.M))
        assert changed == {
            *(f"tune-{m}@{d}" for m, d in pairs),
            *(f"finetune-{m}@{d}-0" for m, d in pairs),
            *(f"sweep-finetune-budget@{v}-tiny_us-0" for v in (0.001, 0.004)),
            *(f"sweep-finetune-rho@{v}-tiny_us-0" for v in (0.0, 1.0)),
            "report",  # it records every param, so it reads them all
        }, change
    # The new grid's choice reaches the runs: one, rerun by DVC with its tune stage upstream,
    # records the recipe of its tuning file.
    ran = sh("dvc", "repro", "finetune-linear@tiny_us-0").stdout
    assert set(re.findall(r"Running stage '([^']+)'", ran)) == {
        "tune-linear@tiny_us",
        "finetune-linear@tiny_us-0",
    }
    tuned = json.loads(tuning.read_text())
    assert tuned["grid"]["lr_scale"] == [0.25, 4.0] and tuned["chosen"]["recipe"] != first
    run = RunFolder(project / LAYOUT.run_dir("tiny_us", "linear", 0))
    assert run.config()["recipe"]["chosen"] == tuned["chosen"]
    # A second experiment in the same checkout: one dataset, one method, one seed, no sweep. It
    # gets every table, figure and the report in its own folder and MLflow experiment, and the
    # first experiment's outputs stay as they were.
    before = {p: p.read_bytes() for p in (project / LAYOUT.root).rglob("*.csv")}
    (project / "single.yaml").write_text(
        "experiment: single\n"
        "grid: {datasets: [tiny_us], methods: [sh-peft]}\n"
        "sweeps: {budget: {values: []}, rho: {values: []}}\n"
    )
    snakemake("--configfile", "single.yaml")
    single = project / "results" / "single"
    main = pd.read_csv(single / "tables" / "main.csv")
    assert list(main["method"]) == ["sh-peft"] and list(main["p vs sh-peft (Holm)"]) == ["-"]
    friedman = json.loads((single / "tables" / "friedman.json").read_text())
    assert friedman["note"] == "needs 3 methods or more on 2 datasets or more"
    for name in (*kinds, "confusion_tiny_us", "failures_tiny_us"):
        assert (single / "figures" / f"{name}.pdf").is_file(), name
    single_report = (single / "report" / "REPORT.md").read_text()
    assert "No sweep ran" in single_report
    assert "params files not committed" in single_report and "`single.yaml`" in single_report
    assert "Where training ran" in single_report and platform.node() in single_report
    assert {p: p.read_bytes() for p in (project / LAYOUT.root).rglob("*.csv")} == before
    assert len(pd.read_csv(tables / "main.csv")) == 4  # the first experiment's table
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    counts = {
        name: sum(
            run.data.tags["step"] in ("finetune", "sweep_finetune", "study")
            for run in client.search_runs([client.get_experiment_by_name(name).experiment_id])
        )
        for name in ("tiny", "single")
    }
    # Grid and sweep runs, the studies, and DVC's rerun after the grid change; the single run.
    assert counts == {"tiny": 8 + 4 + 2 + 1, "single": 1}


CSV_STUDY = """
grid: {datasets: [tiny_csv], methods: [linear]}
datasets:
  tiny_csv: {source: csv, root: data/tiny_csv, manifest: labels.csv, image_size: 16}
masks: {hybrid: {budget: 0.002}}
sweeps: {budget: {values: []}, rho: {values: []}}
"""


def _csv_dataset(root: Path) -> Path:
    """Three classes of tiny images listed in a CSV manifest, each split holding each class."""
    root.mkdir(parents=True)
    rows = ["path,label,split"]
    for c, label in enumerate(("a", "b", "c")):
        for i, split in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 2):
            Image.new("L", (16, 16), 40 + 80 * c + i).save(root / f"{label}{i}.png")
            rows.append(f"{label}{i}.png,{label},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_an_edited_label_reruns_prepare_and_what_follows_in_both_tools(project):
    manifest = _csv_dataset(project / "data" / "tiny_csv")
    use_tiny_params(project, CSV_STUDY)
    snakemake()
    assert planned_jobs() == {} and "up to date" in sh("dvc", "status").stdout
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].replace(",a,", ",b,")  # one image relabelled
    manifest.write_text("\n".join(lines) + "\n")
    variants = list(load([project / "params.yaml"]).masks)
    downstream = {"score": 1, "mask": len(variants), "finetune": 1, "aggregate": 1}
    assert planned_jobs() == {"prepare": 1, **downstream, "figures": 1, "report": 1, "all": 1}
    ran = sh("dvc", "repro").stdout  # for real: a dry run cannot know what prepare will change
    stages = set(re.findall(r"Running stage '([^']+)'", ran))
    assert stages == {
        "prepare-tiny_csv",
        "score@tiny_csv-0",
        *(f"mask@tiny_csv-{variant}-0" for variant in variants),
        "finetune-linear@tiny_csv-0",
        "aggregate",
        "figures",
        "report",
    }


def test_dvc_repro_runs_the_pipeline_and_an_experiment_reruns_what_it_changes(project):
    # One dataset and no sweep keep it short; the sweeps' stages run in the test above.
    use_tiny_params(
        project,
        "grid: {datasets: [tiny_us], methods: [full, linear, lora, sh-peft, sparse-oracle]}\n"
        "sweeps: {budget: {values: []}, rho: {values: []}}\n",
    )
    sh("dvc", "repro")
    methods = ["full", "linear", "lora", "sh-peft", "sparse-oracle"]
    # Five runs, then a mean and a std row for each of the five methods.
    assert len(pd.read_csv(LAYOUT.table("summary.csv"))) == 5 + 2 * 5
    assert "up to date" in sh("dvc", "status").stdout
    assert (project / LAYOUT.root / "metrics.json").is_file()
    pareto = pd.read_csv(LAYOUT.table("pareto.csv"))
    assert list(pareto["method"]) == methods
    assert pareto.loc[0, "trainable_fraction"] == 1.0 and pareto.loc[1, "trainable_fraction"] == 0
    rendered = json.loads(sh("dvc", "plots", "show", "--json").stdout)["data"]
    pareto_plot = "Accuracy against trainable fraction (Pareto)"
    assert set(rendered) == {"Validation accuracy per epoch", pareto_plot}
    assert "trainable_fraction" in json.dumps(rendered[pareto_plot])
    # An experiment on the committed baseline: only the LoRA run and what gathers runs rerun
    # (not the study, which reads the mask trainers' configs alone).
    for key, value in (("user.name", "t"), ("user.email", "t@t")):  # DVC commits experiments
        sh("git", "config", key, value)
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "baseline")
    ran = sh("dvc", "exp", "run", "-n", "lora16", "-S", "methods.lora.rank=16").stdout
    assert sorted(set(re.findall(r"Running stage '([^']+)'", ran))) == [
        "aggregate",
        "figures",
        "finetune-lora@tiny_us-0",
        "report",
    ], ran
    shown = pd.read_csv(io.StringIO(sh("dvc", "exp", "show", "--csv").stdout))
    row = shown[shown["Experiment"] == "lora16"].iloc[0]
    assert str(row["methods.lora.rank"]) in ("16", "16.0")
    metric = next(c for c in shown.columns if c.endswith("tiny_us.lora.accuracy_mean"))
    assert 0 <= float(row[metric]) <= 1


def test_snakemake_lint_is_clean(project):
    result = snakemake("--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr or result.stdout.strip() == ""


# Every job Snakemake would run, as its API sees it: the command, outputs, inputs and the params
# keys the rule declares (its `sections` param).
SNAKEMAKE_JOBS = """
import json
import platform
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import DAGSettings, OutputSettings, Quietness, ResourceSettings

with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    workflow_api = api.workflow(
        resource_settings=ResourceSettings(cores=1), snakefile=Path("Snakefile")
    )
    workflow_api.dag(DAGSettings(forceall=True))
    workflow = workflow_api._workflow
    workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
    workflow._build_dag()
    for job in workflow.dag.jobs:
        if job.rule.name != "all":
            print(json.dumps({
                "cmd": job.params.command,
                "outs": sorted(job.output),
                "deps": sorted(job.input),
                "params": sorted(job.params.sections),
            }))
"""

DVC_JOBS = """
import json
import platform
from dvc.repo import Repo
for stage in Repo(".").index.stages:
    print(json.dumps({
        "cmd": " ".join(stage.cmd.split()),
        "outs": sorted(str(o.def_path) for o in stage.outs),
        "deps": sorted(str(d.def_path) for d in stage.deps if type(d).__name__ == "Dependency"),
        "params": sorted(key or "*" for p in stage.params for key in (p.params or [None])),
    }))
"""


def _jobs(script: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in sh(sys.executable, "-c", script).stdout.splitlines()]
    return {row.pop("cmd"): row for row in rows}


def _covers(dvc_deps: list[str], inputs: list[str]) -> bool:
    """DVC deps name the same files as Snakemake's inputs, a collected input through its folder."""
    under = {i: [d for d in dvc_deps if i == d or i.startswith(f"{d}/")] for i in inputs}
    return all(under.values()) and {d for found in under.values() for d in found} == set(dvc_deps)


@pytest.mark.parametrize("params", ["default", "tiny"])
def test_snakemake_and_dvc_have_the_same_jobs(project, params):
    """Same commands, outputs, inputs and params for every job of the two runners."""
    if params == "tiny":
        use_tiny_params(project)
    snake, dvc = _jobs(SNAKEMAKE_JOBS), _jobs(DVC_JOBS)
    assert len(snake) > 5 and set(snake) == set(dvc)
    for command, job in snake.items():
        stage = dvc[command]
        assert job["outs"] == stage["outs"], command
        assert _covers(stage["deps"], job["deps"]), (command, stage["deps"], job["deps"])
        assert job["params"] == stage["params"], command


def test_a_stale_dvc_yaml_stops_dvc_repro(project):
    """grid.methods changed without `make dvc-yaml`: the first command DVC runs says so."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["grid"]["methods"] = params["grid"]["methods"][:2]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = sh("dvc", "repro", "prepare-xray", check=False)
    assert result.returncode != 0
    assert "dvc.yaml: does not match what params.yaml generates" in result.stdout + result.stderr
    assert not (project / "results" / "demo" / "data" / "xray").exists()


def test_keep_going_with_broken_datasets(project):
    """A missing npz and a corrupt image each stop only their dataset, and their logs say which.

    Only the prepare outputs are targeted, so the overlay adds datasets without touching the grid.
    """
    images = project.parent / "images"
    for c, name in enumerate("ab"):
        (images / name).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), 60 + 100 * c).save(images / name / f"{i}.png")
    corrupt = images / "b" / "3.png"
    Image.effect_noise((32, 32), 64).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated within its pixel data
    overlay = {
        "datasets": {
            "good": {
                "source": "synthetic",
                "kind": "xray",
                "image_size": 16,
                "n_train": 9,
                "n_val": 6,
                "n_test": 6,
            },
            "missing": {
                "source": "medmnist",
                "name": "breastmnist",
                "root": "nowhere",
                "image_size": 16,
            },
            "corrupt": {"source": "imagefolder", "root": str(images), "image_size": 16},
        },
    }
    (project / "broken.yaml").write_text(yaml.safe_dump(overlay))
    targets = [f"results/demo/data/{name}" for name in overlay["datasets"]]
    result = snakemake("--configfile", "broken.yaml", "--keep-going", *targets, check=False)
    assert result.returncode != 0
    demo = project / "results" / "demo"
    assert (demo / "data" / "good" / "manifest.json").is_file()
    logs = demo / "logs" / "prepare"
    expected = {
        "missing": "nowhere/breastmnist.npz: MedMNIST file not found",
        "corrupt": f"{corrupt}: corrupt or truncated image",
    }
    for name, message in expected.items():
        assert not (demo / "data" / name).exists()
        log = (logs / f"{name}.log").read_text()
        assert message in log and "Traceback" not in log, log


def test_bad_params_stop_the_workflow_with_one_message(project):
    (project / "bad.yaml").write_text("finetune: {lr: fast}\n")
    result = snakemake("--dry-run", "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    assert "bad.yaml: key 'finetune.lr': 'fast' is refused: input should be a valid number" in (
        result.stdout + result.stderr
    )


def test_default_params_cover_the_demo_grid():
    params = load([ROOT / "params.yaml"])
    assert len(params.grid.datasets) >= 3 and len(params.seeds) >= 2
