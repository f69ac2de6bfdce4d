"""Params: layering, validation messages that name the key, schema and dataclasses in sync."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from conftest import ROOT, TINY
from shpeft.backbone import BackboneConfig, PretrainConfig
from shpeft.data.registry import sources
from shpeft.errors import ShpeftError
from shpeft.importance import ScoreConfig
from shpeft.masks import MaskConfig
from shpeft.methods.registry import methods
from shpeft.params import deep_merge, field_names, load_params, load_schema, validate
from shpeft.stats import StatsConfig
from shpeft.sweeps import SweepConfig
from shpeft.training import AugmentConfig, FinetuneConfig


@pytest.fixture
def params() -> dict:
    return load_params([ROOT / "params.yaml"])


def test_default_and_tiny_params_are_valid(params, tiny_params):
    assert tiny_params["grid"]["datasets"] == ["tiny_us", "tiny_derm"]
    # Lists replace, mappings merge: the demo datasets stay defined, the grid is the tiny one.
    assert set(params["datasets"]) < set(tiny_params["datasets"])
    assert tiny_params["finetune"]["lr"] == params["finetune"]["lr"]
    assert (
        tiny_params["finetune"]["epochs"] == yaml.safe_load(TINY.read_text())["finetune"]["epochs"]
    )


def test_deep_merge_does_not_modify_inputs():
    base = {"a": {"b": 1, "c": [1, 2]}}
    merged = deep_merge(base, {"a": {"c": [3]}})
    assert merged == {"a": {"b": 1, "c": [3]}} and base == {"a": {"b": 1, "c": [1, 2]}}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["finetune"].update(lr="fast"), "key 'finetune.lr': 'fast' is not of type"),
        (lambda c: c["finetune"].update(lrr=0.1), "key 'finetune': unknown key(s) 'lrr'"),
        (lambda c: c["datasets"]["xray"].update(source="dicom"), "key 'datasets.xray.source'"),
        (
            lambda c: c["datasets"]["xray"].update(root="x"),
            "key 'datasets.xray': unknown key(s) 'root'",
        ),
        (lambda c: c["methods"]["full"].update(kind="magic"), "key 'methods.full.kind'"),
        (lambda c: c["grid"]["datasets"].append("busi"), "'busi' is not defined under 'datasets'"),
        (lambda c: c["grid"]["methods"].append("lin"), "'lin' is not defined under 'methods'"),
        (lambda c: c.update(seeds=[0, "one"]), "key 'seeds.1'"),
        (lambda c: c["methods"].update({"x;rm -rf": {"kind": "full"}}), "key 'methods'"),
        (lambda c: c["datasets"].update({"../up": c["datasets"]["xray"]}), "key 'datasets'"),
        (lambda c: c["backbone"].update(weights="http://x"), "key 'backbone.weights'"),
        (lambda c: c.pop("finetune"), "'finetune' is a required key"),
        (lambda c: c["masks"]["hybrid"].update(rho=1.5), "key 'masks.hybrid.rho'"),
        (lambda c: c["masks"]["hybrid"].update(budget=0), "key 'masks.hybrid.budget'"),
        (lambda c: c["methods"]["lora"].update(rank=0), "key 'methods.lora.rank'"),
        (lambda c: c["methods"]["vpt-deep"].update(length=0), "key 'methods.vpt-deep.length'"),
        (lambda c: c["methods"]["ssf"].update(rank=4), "key 'methods.ssf': unknown key(s) 'rank'"),
    ],
)
def test_bad_params_name_the_key(params, mutate, expected):
    config = copy.deepcopy(params)
    mutate(config)
    with pytest.raises(ShpeftError) as info:
        validate(config, "params.yaml")
    assert str(info.value).startswith("params.yaml: ")
    assert expected in str(info.value)


def test_unreadable_params_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed")
    with pytest.raises(ShpeftError, match="bad.yaml: not valid YAML"):
        load_params([bad])
    with pytest.raises(ShpeftError, match="missing.yaml: params file not found"):
        load_params([tmp_path / "missing.yaml"])


def _schema_keys(schema: dict, ref: str) -> set[str]:
    return set(schema["$defs"][ref]["properties"])


def test_schema_matches_dataclasses():
    """Every option a config dataclass has is in the schema and vice versa."""
    schema = load_schema()
    for name, source in sources().items():
        assert _schema_keys(schema, f"source_{name}") == field_names(source.config_cls), name
    assert set(schema["$defs"]["method"]["properties"]["kind"]["enum"]) == set(methods())
    for branch in schema["$defs"]["method"]["allOf"]:
        kinds = branch["if"]["properties"]["kind"]
        definition = branch["then"]["$ref"].split("/")[-1]
        for kind in kinds.get("enum", [kinds.get("const")]):
            config_cls = methods()[kind].config_cls
            assert _schema_keys(schema, definition) == field_names(config_cls), kind
    assert _schema_keys(schema, "finetune") == field_names(FinetuneConfig)
    augment = schema["$defs"]["finetune"]["properties"]["augment"]["properties"]
    assert set(augment) == field_names(AugmentConfig)
    assert _schema_keys(schema, "backbone") == field_names(BackboneConfig)
    pretrain = schema["$defs"]["backbone"]["properties"]["pretrain"]["properties"]
    assert set(pretrain) == field_names(PretrainConfig)
    assert set(schema["properties"]["score"]["properties"]) == field_names(ScoreConfig)
    mask = schema["properties"]["masks"]["additionalProperties"]["properties"]
    assert set(mask) == field_names(MaskConfig)
    assert set(schema["properties"]["stats"]["properties"]) == field_names(StatsConfig)
    assert _schema_keys(schema, "sweep") == field_names(SweepConfig)


def test_dataclass_defaults_are_valid_values():
    """Defaults of the typed configs pass the schema (no drift between code and schema)."""
    params = load_params([ROOT / "params.yaml"])
    params["finetune"] = dataclasses.asdict(FinetuneConfig())
    params["backbone"] = dataclasses.asdict(BackboneConfig())
    params["score"] = dataclasses.asdict(ScoreConfig())
    validate(params)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["grid"]["methods"].append("sh-peft"), "'sh-peft' trains on a mask"),
        (
            lambda c: c["grid"]["sparse_methods"].append("linear"),
            "key 'grid.sparse_methods': 'linear' has no mask",
        ),
        (
            lambda c: c["methods"]["sh-peft"].update(mask="nomask"),
            "key 'methods.sh-peft.mask': no mask variant 'nomask'",
        ),
        (lambda c: c["methods"]["sh-peft"].pop("mask"), "'mask' is a required key"),
    ],
)
def test_sparse_methods_are_checked(params, mutate, expected):
    config = copy.deepcopy(params)
    mutate(config)
    with pytest.raises(ShpeftError, match=expected):
        validate(config, "params.yaml")
