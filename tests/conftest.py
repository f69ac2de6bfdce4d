"""Shared fixtures: the project root, the tiny params, real MedMNIST files, scratch projects."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from shpeft import paths
from shpeft.params import Params, load

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "params.tiny.yaml"
MEDMNIST = ROOT.parent / "shared" / "data" / "medmnist"
#: Where the tiny params (`experiment: tiny`) put their outputs, relative to the project.
LAYOUT = paths.layout("tiny")
PROJECT_FILES = (
    "Snakefile",
    "workflow",
    "params.yaml",
    "dvc.yaml",
    "profiles",
    "environment.yml",
    ".dvc/config",
)

needs_medmnist = pytest.mark.skipif(
    not (MEDMNIST / "breastmnist.npz").is_file(),
    reason=f"real MedMNIST files not found in {MEDMNIST} (the shared data folder beside the repo)",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need a CUDA device; on a machine without one they skip, saying so."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def layered(tmp: Path, overlay: str = "", base: tuple[Path, ...] = (ROOT / "params.yaml", TINY)):
    """The params of `base` with `overlay` (YAML text) on top, written under `tmp`."""
    files = list(base)
    if overlay:
        path = tmp / f"overlay{len(list(tmp.glob('overlay*.yaml')))}.yaml"
        path.write_text(overlay)
        files.append(path)
    return load(files)


@pytest.fixture
def tiny_params() -> Params:
    return load([ROOT / "params.yaml", TINY])


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run the test with a scratch working directory (results/ and mlflow.db land there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SHPEFT_PARAMS", raising=False)
    return tmp_path


def make_project(dest: Path) -> Path:
    """A scratch copy of the workflow files at `dest`, as a git + DVC repository."""
    for name in PROJECT_FILES:
        source = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    shutil.copy2(TINY, dest / "tiny.yaml")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True, env=env)
    ignored = (ROOT / ".gitignore").read_text().splitlines()  # the project's own rules
    (dest / ".gitignore").write_text("\n".join([*ignored, "/mlflow.db*", ""]))
    (dest / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=dest, check=True, env=env)
    return dest


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A scratch project (`make_project`) as working directory."""
    dest = make_project(tmp_path / "project")
    monkeypatch.chdir(dest)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SHPEFT_PARAMS", raising=False)
    return dest


def use_tiny_params(project: Path, overlay: str = "") -> Params:
    """Make the project's params.yaml the tiny params (merged, with `overlay` on top) and
    regenerate its dvc.yaml from them, as a user would with `make dvc-yaml`."""
    import yaml

    from shpeft.dvc_yaml import write

    params = layered(project, overlay, base=(project / "params.yaml", TINY))
    (project / "params.yaml").write_text(yaml.safe_dump(params.raw, sort_keys=False))
    write(load([project / "params.yaml"]), project / "dvc.yaml")
    return params


@pytest.fixture
def tiny_ready(in_tmp) -> Params:
    """The tiny params on a randomly initialised backbone, with `tiny_us` prepared and the
    backbone written, in a scratch working directory."""
    from shpeft.steps import run_job

    params = layered(in_tmp, "backbone: {weights: none}\n")
    run_job(params, "prepare", dataset="tiny_us")
    run_job(params, "backbone")
    return params


#: Cores of the served grid's local run (the SLURM test gives each rule the same threads).
GRID_CORES = 2
#: The tiny grid narrowed to one dataset and two methods, each job's memory request small enough
#: for one machine as one SLURM node, logging to the server `served_grid` starts.
SERVED_GRID = """\
grid: {datasets: [tiny_us], methods: [linear, sh-peft]}
sweeps: {budget: {values: []}, rho: {values: []}}
resources:
  prepare: {runtime: 10, mem_mb: 1500}
  backbone: {runtime: 10, mem_mb: 1500}
  score: {runtime: 10, mem_mb: 1500}
  tune: {runtime: 10, mem_mb: 1500}
  finetune: {runtime: 10, mem_mb: 1500}
  study: {runtime: 10, mem_mb: 1500}
tracking: {uri: "%s"}
"""


@pytest.fixture(scope="session")
def served_grid(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """`SERVED_GRID` run locally on `GRID_CORES` against a real `mlflow server`, which stays up
    for the session: the project and the server's URL."""
    from commands import run
    from live import mlflow_server

    folder = tmp_path_factory.mktemp("served")
    with mlflow_server(folder) as url:
        project = make_project(folder / "project")
        use_tiny_params(project, SERVED_GRID % url)
        env = {
            k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SHPEFT_PARAMS")
        }
        cores = str(GRID_CORES)
        run("snakemake", "--cores", cores, "--resources", f"gpu={cores}", cwd=project, env=env)
        yield project, url
