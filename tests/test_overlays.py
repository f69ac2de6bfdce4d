"""The overlays in config/: each layers over params.yaml and over any other, and the example
overlays for your own data prepare and plan as they are."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from commands import BIN
from conftest import ROOT
from fabricate import TREES
from helpers import image_folder
from shpeft import dag
from shpeft.errors import ShpeftError
from shpeft.params import load, read_yaml
from shpeft.steps import run_job

OVERLAYS = sorted(p.relative_to(ROOT) for p in (ROOT / "config").rglob("*.yaml"))


def test_there_are_overlays_and_examples():
    names = {str(p) for p in OVERLAYS}
    assert {"config/examples/csv.yaml", "config/examples/imagefolder.yaml"} <= names
    assert "config/vit-b16-in21k.yaml" in names


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.permutations(OVERLAYS, 2)),
    ids=[f"{a.stem}+{b.stem}" for a, b in itertools.permutations(OVERLAYS, 2)],
)
def test_every_overlay_layers_over_any_other(first, second):
    params = load([ROOT / "params.yaml", ROOT / first, ROOT / second])
    assert dag.targets(params)  # validated, and the DAG plans


def test_the_paper_overlay_names_no_dataset_and_runs_three_seeds():
    text = (ROOT / "config" / "vit-b16-in21k.yaml").read_text()
    data = ROOT / "config" / "medmnist-224.yaml"
    params = load([ROOT / "params.yaml", data, ROOT / "config" / "vit-b16-in21k.yaml"])
    assert params.experiment == "medmnist-224"  # the data overlay's study, with other weights
    assert "datasets" not in text.split("sweeps:")[0] and len(params.seeds) >= 3
    assert all(len(getattr(params.sweeps, s).seeds) >= 3 for s in ("budget", "rho"))


def test_the_paper_config_repeats_the_weights_overlay_and_runs_every_method():
    weights = read_yaml(ROOT / "config" / "vit-b16-in21k.yaml")
    paper = read_yaml(ROOT / "config" / "paper.yaml")
    for key, value in weights.items():  # the same facts, so that paper.yaml runs alone
        if key == "sweeps":
            for sweep, options in value.items():
                assert paper[key][sweep] == {**options, "datasets": None}, sweep
        else:
            assert paper[key] == value, key
    params = load([ROOT / "params.yaml", ROOT / "config" / "paper.yaml"])
    assert set(params.grid.methods) == set(params.methods) and len(params.seeds) >= 3
    assert {params.datasets[d].source for d in params.grid.datasets} == set(TREES)
    assert params.study_datasets() == params.grid.datasets and params.tune.enabled
    assert {mask.budget for mask in params.masks.values()} == {0.0001}


def test_the_paper_grid_plans_given_local_dataset_roots(project):
    """`snakemake -n --configfile config/paper.yaml`, each preset's tree where its root says."""
    shutil.copytree(ROOT / "config", project / "config")
    params = load([project / "params.yaml", project / "config" / "paper.yaml"])
    for name in params.grid.datasets:
        entry = params.datasets[name]
        TREES[entry.source](project / entry.root)
    plan = subprocess.run(
        [str(BIN / "snakemake"), "-n", "--cores", "1", "--configfile", "config/paper.yaml"],
        capture_output=True,
        text=True,
    )
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout, re.MULTILINE))
    runs = len(params.grid.datasets) * len(params.grid.methods) * len(params.seeds)
    assert int(counts["finetune"]) == runs == 6 * 17 * 3
    assert int(counts["prepare"]) == 6 and int(counts["study"]) == 6 * 3


def _csv_data(root: Path) -> None:
    folder = image_folder(root / "data" / "my-csv", per_class=8, modes=("L", "RGB"))
    rows = [f"{c}/{i}.png,{c}" for c in ("a", "b") for i in range(8)]
    (folder / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")


def _folder_data(root: Path) -> None:
    image_folder(root / "data" / "my-folder", per_class=8, modes=("L", "RGB"))


@pytest.mark.parametrize(
    ("example", "dataset", "make"),
    [("csv", "my-csv", _csv_data), ("imagefolder", "my-folder", _folder_data)],
)
def test_an_example_overlay_prepares_and_plans(project, example, dataset, make):
    """As a user would: data where the example says, the overlay copied as it is."""
    make(project)
    shutil.copytree(ROOT / "config", project / "config")
    overlay = project / "config" / "examples" / f"{example}.yaml"
    for layers in ([overlay], [overlay, project / "config" / "vit-b16-in21k.yaml"]):
        params = load([project / "params.yaml", *layers])
        assert params.grid.datasets == [dataset]
        run_job(params, "prepare", dataset=dataset)
        plan = subprocess.run(
            [
                str(BIN / "snakemake"),
                "--dry-run",
                "--cores",
                "1",
                "--configfile",
                *map(str, layers),
            ],
            capture_output=True,
            text=True,
        )
        assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
        assert (
            "shpeft sweep-finetune --sweep budget --value" in plan.stdout or "sweep" in plan.stdout
        )


def test_an_overlay_that_changes_the_demo_must_name_its_own_experiment(in_tmp):
    """Else its outputs would overwrite the demo's in results/demo/."""
    weights = ROOT / "config" / "vit-b16-in21k.yaml"
    with pytest.raises(
        ShpeftError,
        match=r"vit-b16-in21k.yaml: key 'experiment': .*backbone.*"
        r"results/demo/; name an experiment of their own",
    ):
        load([ROOT / "params.yaml", weights])
    (in_tmp / "named.yaml").write_text("experiment: vit-on-demo-data\n")
    assert load([ROOT / "params.yaml", weights, in_tmp / "named.yaml"]).layout.root == Path(
        "results/vit-on-demo-data"
    )
    (in_tmp / "how.yaml").write_text(
        "resources: {finetune: {runtime: 30, mem_mb: 9000}}\ntracking: {tries: 2}\n"
    )
    assert load([ROOT / "params.yaml", in_tmp / "how.yaml"]).experiment == "demo"
