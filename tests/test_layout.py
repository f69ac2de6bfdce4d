"""The package's shape: no import cycle, every step of the DAG has its module, generated files
current, and the command line only dispatches."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

from conftest import ROOT
from shpeft import dag
from shpeft.dvc_yaml import render
from shpeft.params import load

PACKAGE = ROOT / "src" / "shpeft"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded |= {id(inner) for inner in ast.walk(node)}
    return guarded


def import_graph() -> dict[str, set[str]]:
    """Module -> the shpeft modules it imports anywhere (functions too; type-only ones aside)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        guarded = _type_checking_nodes(tree)
        found = set()
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        trail.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_engine_modules_do_not_import_steps_or_the_command_line():
    for name, imported in import_graph().items():
        if not name.startswith(("shpeft.steps", "shpeft.cli")):
            upward = {m for m in imported if m.startswith(("shpeft.steps", "shpeft.cli"))}
            assert not upward, (name, upward)


def test_every_step_has_its_module_and_run_takes_what_the_dag_declares():
    for step in dag.STEPS.values():
        run = importlib.import_module(step.module).run
        keywords = list(inspect.signature(run).parameters)
        assert keywords == ["job", "inputs", *step.reads], step.name


def test_dvc_yaml_is_current():
    """`make dvc-yaml` leaves nothing to commit."""
    expected = render(load([ROOT / "params.yaml"]))
    assert (ROOT / "dvc.yaml").read_text() == expected, "run `make dvc-yaml` and commit the result"


def test_tensors_leave_the_device_through_one_helper():
    """`.numpy()` on a CUDA tensor raises: outside `train.devices.to_numpy`, nothing calls it."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "numpy"
            ):
                calls.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert [call.split(":")[0] for call in calls] == ["train/devices.py"], calls
