"""Shared fixtures: the project root, the tiny params, real MedMNIST files, a scratch project."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shpeft.params import load_params

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "params.tiny.yaml"
MEDMNIST = ROOT.parent / "shared" / "data" / "medmnist"
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


@pytest.fixture
def tiny_params() -> dict:
    return load_params([ROOT / "params.yaml", TINY])


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run the test with a scratch working directory (results/ and mlflow.db land there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A scratch copy of the workflow files, as a git + DVC repository, as working directory."""
    dest = tmp_path / "project"
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
    (dest / ".gitignore").write_text(
        "/results/\n/mlflow.db*\n/mlartifacts/\n/.snakemake/\n/.shpeft/\n"
    )
    (dest / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=dest, check=True, env=env)
    monkeypatch.chdir(dest)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return dest
