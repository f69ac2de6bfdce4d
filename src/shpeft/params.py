"""Loading, layering and validating `params.yaml`, and typed access to its sections.

`params.yaml` is Snakemake's configfile and DVC's params file at once. Further files given with
`--params` (Snakemake: `--configfile`) are deep-merged on top, the way Snakemake merges them.
The JSON schema in `workflow/schemas/params.schema.yaml` is the single statement of which keys
exist; the dataclasses give the code typed, documented access to them.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml

from shpeft.errors import ShpeftError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = ("params.yaml",)

T = TypeVar("T")


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `top` into a copy of `base`: mappings merge key by key, anything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ShpeftError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ShpeftError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ShpeftError(f"{path}: the top level must be a mapping of sections")
    return data


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """JSON Schema's `pattern`, whose `$` ends the string (Python's also matches before a final
    newline, which would let a name ending in a newline into paths and shell commands)."""
    if not validator.is_type(instance, "string"):
        return
    match = re.search(pattern, instance)
    if match is None or (pattern.endswith("$") and match.end() != len(instance)):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
    if error.validator == "required":
        return error.message.replace("property", "key")
    return error.message


def validate(config: Mapping[str, Any], origin: str = "params") -> None:
    """Check `config` against the schema and its cross-references; one message names the key."""
    validator = Validator(load_schema())
    errors = list(validator.iter_errors(config))
    if errors:
        # The deepest error is the most specific one; ties go to the first reported.
        error = max(errors, key=lambda e: len(e.absolute_path))
        while error.context:
            error = max(error.context, key=lambda e: len(e.absolute_path))
        raise ShpeftError(f"{origin}: key '{_key_path(error)}': {_describe(error)}")
    grid = config["grid"]
    sections = (("datasets", "datasets"), ("methods", "methods"), ("sparse_methods", "methods"))
    for key, section in sections:
        for name in grid.get(key, []):
            if name not in config[section]:
                defined = ", ".join(sorted(config[section])) or "none"
                raise ShpeftError(
                    f"{origin}: key 'grid.{key}': '{name}' is not defined under '{section}' "
                    f"(defined: {defined})"
                )
    _check_sparse_methods(config, origin)
    _check_sweeps(config, origin)


def _check_sparse_methods(config: Mapping[str, Any], origin: str) -> None:
    """Methods with a mask are listed under grid.sparse_methods, and their mask variant exists."""
    grid, methods = config["grid"], config["methods"]
    if not run_methods(config):
        raise ShpeftError(f"{origin}: key 'grid': no method to run in methods or sparse_methods")
    for name in grid["methods"]:
        if "mask" in methods[name]:
            raise ShpeftError(
                f"{origin}: key 'grid.methods': '{name}' trains on a mask; "
                "list it under grid.sparse_methods"
            )
    for name in grid.get("sparse_methods", []):
        if name in grid["methods"] or "mask" not in methods[name]:
            raise ShpeftError(
                f"{origin}: key 'grid.sparse_methods': '{name}' has no mask or is also listed "
                "under grid.methods"
            )
        variant = methods[name]["mask"]
        if variant not in config.get("masks", {}):
            raise ShpeftError(
                f"{origin}: key 'methods.{name}.mask': no mask variant '{variant}' under 'masks'"
            )


def _check_sweeps(config: Mapping[str, Any], origin: str) -> None:
    """A sweep retrains a method with a mask, on datasets the grid scores."""
    for name, sweep in config.get("sweeps", {}).items():
        method = sweep["method"]
        if "mask" not in config["methods"].get(method, {}):
            raise ShpeftError(
                f"{origin}: key 'sweeps.{name}.method': '{method}' is not a method with a mask"
            )
        outside = sorted(set(sweep["datasets"]) - set(config["grid"]["datasets"]))
        if outside:
            raise ShpeftError(
                f"{origin}: key 'sweeps.{name}.datasets': {', '.join(outside)} not in "
                "grid.datasets (the grid's score step rates their weights)"
            )


def run_methods(config: Mapping[str, Any]) -> list[str]:
    """Every method of the grid: the plain ones, then the sparse ones."""
    return [*config["grid"]["methods"], *config["grid"].get("sparse_methods", [])]


def load_params(files: Sequence[str | Path] = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read, deep-merge in order, and validate the given params files."""
    config: dict[str, Any] = {}
    for path in files:
        config = deep_merge(config, read_yaml(path))
    validate(config, origin=" + ".join(str(f) for f in files))
    return config


def build(cls: type[T], data: Mapping[str, Any]) -> T:
    """Instantiate dataclass `cls` from a validated mapping, recursing into dataclass fields."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name not in data:
            continue
        value = data[field.name]
        field_type = _dataclass_in(hints[field.name])
        kwargs[field.name] = build(field_type, value) if field_type and value is not None else value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass named by a hint such as `Foo` or `Foo | None`, if any."""
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def field_names(cls: type) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}
