"""Params: layering, one message per mistake naming the file and key, generated files current."""

from __future__ import annotations

import re
import subprocess
import sys

import jsonschema
import pytest
import yaml

from conftest import ROOT, TINY, layered
from shpeft.cli import main
from shpeft.config import deep_merge, merged
from shpeft.errors import ShpeftError
from shpeft.params import SCHEMA_FILE, load, params_model
from shpeft.reference import REFERENCE_FILE, reference_text, schema_text


@pytest.fixture
def params():
    return load([ROOT / "params.yaml"])


def test_default_and_tiny_params_are_valid(params, tiny_params):
    assert tiny_params.grid.datasets == ["tiny_us", "tiny_derm"]
    # Lists replace, mappings merge: the demo datasets stay defined, the grid is the tiny one.
    assert set(params.datasets) < set(tiny_params.datasets)
    assert tiny_params.finetune.lr == params.finetune.lr
    assert tiny_params.finetune.epochs == yaml.safe_load(TINY.read_text())["finetune"]["epochs"]
    assert tiny_params.files == [str(ROOT / "params.yaml"), str(TINY)]


def test_a_method_override_merges_into_finetune(params, in_tmp):
    full = merged(params.finetune, params.methods["full"].finetune)
    assert full.lr == 0.0003 and full.epochs == params.finetune.epochs
    assert merged(params.finetune, params.methods["lora"].finetune) == params.finetune
    overlay = "methods: {full: {finetune: {augment: {hflip: 0.0}}}}\n"
    deeper = layered(in_tmp, overlay, base=(ROOT / "params.yaml",))
    augment = merged(deeper.finetune, deeper.methods["full"].finetune).augment
    assert augment.hflip == 0.0 and augment.translate == params.finetune.augment.translate


def test_deep_merge_does_not_modify_inputs():
    base = {"a": {"b": 1, "c": [1, 2]}}
    merged = deep_merge(base, {"a": {"c": [3]}})
    assert merged == {"a": {"b": 1, "c": [3]}} and base == {"a": {"b": 1, "c": [1, 2]}}


# Typical mistakes in an overlay, each with the one line it must give: the file, the key path and
# what is allowed (the nearest valid key or value where there is one).
MISTAKES = [
    ("finetune: {lrr: 0.1}", "key 'finetune.lrr': unknown key (did you mean 'lr'?); allowed: "),
    (
        "finetune: {lr: fast}",
        "key 'finetune.lr': 'fast' is refused: input should be a valid number",
    ),
    ("finetune: {lr: 1e-5}", "(YAML reads 1e-5 as text: write it with a decimal point"),
    ("methods: {lora: {kind: lorra}}", "key 'methods.lora.kind': 'lorra' is not one of adapter,"),
    ("datasets: {xray: {n_trian: 30}}", "key 'datasets.xray.n_trian': unknown key (did you mean"),
    ("grid: {methods: [full, lin]}", "key 'grid.methods': 'lin' is not defined under 'methods'"),
    ("masks: {hybrid: {rule: splt}}", "key 'masks.hybrid.rule': 'splt' is refused: input should"),
    ("masks: {hybrid: {rho: 1.5}}", "key 'masks.hybrid.rho': 1.5 is refused: input should be less"),
    ("datasets: [a, b]", "key 'datasets': ['a', 'b'] is refused: input should be a valid dict"),
    ("seeds: [0, 0]", "key 'seeds': [0, 0] is refused: listed more than once: 0"),
    ("methods: {'a b': {kind: full}}", "key 'methods.a b': the name 'a b' is refused: names are"),
    ("methods: {spt: {mask: hybrid}}", "key 'methods.spt.mask': kind 'spt' trains its own select"),
    ("grid: [unclosed", "not valid YAML at line 2, column 1: expected ',' or ']'"),
]


@pytest.mark.parametrize(("overlay", "expected"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_typical_mistakes_give_one_line_naming_file_and_key(in_tmp, capsys, overlay, expected):
    (in_tmp / "mine.yaml").write_text(overlay + "\n")
    argv = ["prepare", "--dataset", "xray", "--params", str(ROOT / "params.yaml")]
    assert main([*argv, "--params", "mine.yaml"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "shpeft prepare: mine.yaml: " in lines[0] and expected in lines[0], lines[0]


def test_no_traceback_reaches_the_user_of_the_command(in_tmp):
    (in_tmp / "mine.yaml").write_text("finetune: {lrr: 0.1}\n")
    argv = ["prepare", "--dataset", "xray", "--params", str(ROOT / "params.yaml")]
    result = subprocess.run(
        [sys.executable, "-m", "shpeft.cli", *argv, "--params", "mine.yaml"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "mine.yaml: key 'finetune.lrr'" in result.stderr


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        ("datasets: {xray: {source: dicom}}", "key 'datasets.xray.source': 'dicom' is not one of"),
        ("methods: {ssf: {rank: 4}}", "key 'methods.ssf.rank': unknown key; allowed: finetune,"),
        ("methods: {lora: {rank: 0}}", "key 'methods.lora.rank': 0 is refused"),
        ("methods: {vpt-deep: {length: 0}}", "key 'methods.vpt-deep.length': 0 is refused"),
        ("backbone: {weights: 'http://x'}", "key 'backbone.weights': 'http://x' is refused: not"),
        ("seeds: [0, one]", "key 'seeds.1': 'one' is refused"),
        ("methods: {sh-peft: {mask: nomask}}", "no mask variant 'nomask' under 'masks'"),
        ("methods: {gps: {mask: spt}}", "kind 'gps' trains its own selection (rule per_neuron"),
        ("sweeps: {budget: {method: linear}}", "key 'sweeps.budget.method': 'linear' is not a"),
        ("sweeps: {budget: {datasets: [elsewhere]}}", "key 'sweeps.budget.datasets': elsewhere"),
        ("sweeps: {budget: {values: [0.0]}}", "key 'sweeps.budget.values.0': 0.0 is refused"),
        ("methods: {full: {finetune: {epochz: 2}}}", "'methods.full.finetune.epochz': unknown"),
        ("grid: {datasets: []}", "key 'grid.datasets': [] is refused: list should have at least"),
        (
            "published: [{dataset: busi, method: X, metric: accuracy, value: 0.9, citation: Y}]",
            "key 'published.0.dataset': 'busi' is not defined under 'datasets' (dermoscopy,",
        ),
        (
            "published: [{dataset: xray, method: X, metric: accuracy, value: 91.2, citation: Y}]",
            "key 'published.0.value': 91.2 is refused",
        ),
        (
            "datasets: {xray: {cross_split_duplicates: drop}}",
            "'drop' is refused: input should be 'report' or 'refuse'",
        ),
    ],
)
def test_bad_values_name_the_key(in_tmp, overlay, expected):
    with pytest.raises(ShpeftError) as info:
        layered(in_tmp, overlay + "\n", base=(ROOT / "params.yaml",))
    assert str(info.value).startswith(str(in_tmp / "overlay0.yaml") + ": ")
    assert expected in str(info.value)


def test_the_file_named_is_the_one_that_states_the_key(in_tmp):
    """A value an overlay did not touch is reported against the file that states it."""
    (in_tmp / "a.yaml").write_text("datasets: {xray: {source: medmnist}}\n")
    with pytest.raises(ShpeftError) as info:
        load([ROOT / "params.yaml", in_tmp / "a.yaml"])
    assert str(info.value).startswith(f"{ROOT / 'params.yaml'}: key 'datasets.xray.kind': unknown")


def test_unreadable_params_file(tmp_path):
    with pytest.raises(ShpeftError, match="missing.yaml: params file not found"):
        load([tmp_path / "missing.yaml"])
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ShpeftError, match="list.yaml: the top level must be a mapping"):
        load([tmp_path / "list.yaml"])


def test_generated_schema_and_reference_are_current():
    """`make schema` leaves nothing to commit: both files are what the models generate."""
    assert SCHEMA_FILE.read_text() == schema_text(), "run `make schema` and commit the result"
    assert REFERENCE_FILE.read_text() == reference_text(), "run `make schema` and commit the result"


def _properties(schema: dict) -> list[tuple[str, dict]]:
    found = []
    for name, definition in [("Params", schema), *schema["$defs"].items()]:
        found += [
            (f"{name}.{key}", value) for key, value in definition.get("properties", {}).items()
        ]
    return found


def test_every_key_of_every_section_is_documented():
    undocumented = [
        key
        for key, prop in _properties(params_model().model_json_schema())
        if not prop.get("description")
    ]
    assert undocumented == []


def test_the_generated_schema_accepts_the_demo_and_refuses_mistakes(params):
    schema = yaml.safe_load(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for files in ([ROOT / "params.yaml"], [ROOT / "params.yaml", TINY]):
        validator.validate(load(files).raw)
    for bad in ({"finetune": {"lrr": 1}}, {"methods": {"x": {"kind": "magic"}}}):
        assert list(validator.iter_errors(deep_merge(params.raw, bad))), bad


DEFAULT_CLAIM = re.compile(r"^\s*(\w+):\s*(\S+?)\s*#.*?\b([\w.+-]+) is the default", re.M)


def test_params_yaml_comments_state_the_documented_defaults():
    """Where a comment of params.yaml names a key's default, it is the one the code has."""
    text = (ROOT / "params.yaml").read_text()
    claims = DEFAULT_CLAIM.findall(text)
    assert claims, "the check found no claim to check"
    model = params_model()
    for key, _, claimed in claims:
        section = next(
            info.annotation
            for info in model.model_fields.values()
            if isinstance(info.annotation, type)
            and key in getattr(info.annotation, "model_fields", {})
        )
        default = section.model_fields[key].default
        assert yaml.safe_load(claimed) == default, (key, claimed, default)


def test_params_yaml_restates_no_default():
    """params.yaml states what the demo chooses; a key equal to its default is stated twice."""
    params = load([ROOT / "params.yaml"])
    restated = []
    for section in ("finetune", "score", "stats", "backbone", "tracking", "resources"):
        for key, value in (params.raw.get(section) or {}).items():
            default = (
                type(getattr(params, section))
                .model_fields[key]
                .get_default(call_default_factory=True)
            )
            if value == (default.model_dump() if hasattr(default, "model_dump") else default):
                restated.append(f"{section}.{key}")
    assert restated == []
