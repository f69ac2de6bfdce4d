"""The README and docs/ say what the code does: defaults, links, commands, files, pins."""

from __future__ import annotations

import re
import tomllib
import typing

import pytest
import yaml

from conftest import ROOT
from shpeft.cli import parser as cli_parser
from shpeft.params import params_model, unwrap

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "config" / "README.md"]
#: "`section.key` (default value" states a default; the value must be the code's.
DEFAULT_CLAIM = re.compile(r"`([a-z_]+(?:\.[a-z_0-9]+)+)`\s*\(default ([^;),]+)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


def _default(path: str):
    """The code's default of a key path such as `finetune.select` or `masks.hybrid.rho`."""
    model, parts = params_model(), path.split(".")
    while True:
        field = model.model_fields[parts.pop(0)]
        if not parts:
            return field.get_default(call_default_factory=True)
        annotation = unwrap(field.annotation)
        if typing.get_origin(annotation) is dict:  # a mapping by name: skip the name
            parts.pop(0)
            annotation = typing.get_args(annotation)[1]
        model = annotation


def test_every_stated_default_is_the_codes():
    claims = [(doc.name, *m) for doc in DOCS for m in DEFAULT_CLAIM.findall(doc.read_text())]
    assert len(claims) >= 8, claims
    for doc, key, value in claims:
        assert yaml.safe_load(value.strip()) == _default(key), (doc, key, value)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc):
    for target in LINK.findall(doc.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), (doc.name, target)
        if anchor:
            assert anchor in _anchors(path), (doc.name, target)


def test_the_readme_has_a_table_of_contents_of_its_sections():
    text = README.read_text()
    sections = re.findall(r"^## (.+)$", text, re.M)
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    assert [_slug(s) for s in sections if s != "Contents"] == re.findall(r"\(#([^)]+)\)", contents)


def test_the_files_commands_and_make_targets_the_readme_names_exist():
    text = README.read_text()
    for path in set(re.findall(r"`((?:config|docs|profiles|src|workflow)/[\w./-]+)`", text)):
        assert (ROOT / path).exists() or list(ROOT.glob(path)), path
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert set(re.findall(r"\bmake ([a-z-]+)", text)) <= targets
    commands = set(cli_parser()._subparsers._group_actions[0].choices)
    named = set(re.findall(r"(?:`|bin/)shpeft ([a-z-]+)", text))
    assert named and named <= commands


def test_the_readme_states_the_version_pins_that_differ_by_python():
    lock = (ROOT / "requirements.lock").read_text()
    by_python = re.findall(
        r"^([\w-]+)==([\w.]+) ; python_full_version [<>=]+ '[\d.]+'$", lock, re.M
    )
    assert by_python
    for name, version in by_python:
        assert f"{name} {version}" in README.read_text(), (name, version)


def test_citation_and_licence():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert citation["cff-version"] and citation["title"] and citation["authors"]
    assert citation["version"] == project["version"]
    assert citation["license"] == project["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
