"""The conda environment carries exactly the pins of the lock file that `make` installs."""

from __future__ import annotations

import yaml

from conftest import ROOT


def _lock_lines() -> list[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_environment_yml_matches_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert [p for p in pip if p != "-e ."] == _lock_lines()
    assert "python=3.11" in env["dependencies"]


def test_every_lock_line_is_pinned_and_torch_pairs_with_torchvision():
    pins = dict(line.split(";")[0].strip().split("==") for line in _lock_lines())
    assert all(version for version in pins.values())
    torch_minor = pins["torch"].split(".")[1]
    assert pins["torchvision"].split(".")[1] == str(int(torch_minor) + 15)
