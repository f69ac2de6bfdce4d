"""The base of every typed params section, and the few types the sections share.

A section is a pydantic model that refuses unknown keys and never coerces a value silently (a
string is not a number, a bool is not an integer). Each field is documented by the docstring
under it; pydantic reads those docstrings as descriptions, so the generated JSON schema
(`workflow/schemas/params.schema.yaml`) and reference (`config/README.md`) carry them.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Optional, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

#: Dataset, method and mask names become paths, rule wildcards and shell arguments.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


def _unique(values: list[Any]) -> list[Any]:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return values


T = TypeVar("T")
#: A list whose entries must differ (the grid's names, seeds).
Unique = Annotated[T, AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True})]


class Section(BaseModel):
    """A params section: known keys only, strict types, every field documented."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)


S = TypeVar("S", bound=Section)
_PARTIALS: dict[type, type] = {}


def partial(model: type[S]) -> type[S]:
    """The fields of `model`, each optional and unset by default: an override of some of its keys.

    Nested sections become partial too, so an override of `augment.hflip` leaves the other
    `augment` keys to the base it is merged into (`merged`).
    """
    if model not in _PARTIALS:
        fields: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, Section):
                annotation = partial(annotation)
            typed = Annotated[annotation, *info.metadata] if info.metadata else annotation
            fields[name] = (Optional[typed], Field(None, description=info.description))  # noqa: UP045
        _PARTIALS[model] = create_model(
            f"{model.__name__}Override",
            __base__=Section,
            __doc__=f"Some keys of {model.__name__}, each replacing the base value.",
            **fields,
        )
    return _PARTIALS[model]


def merged(base: S, override: Section) -> S:
    """`base` with the keys `override` sets (recursively for nested sections), validated."""
    return type(base).model_validate(
        deep_merge(base.model_dump(), override.model_dump(exclude_unset=True))
    )


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Merge `top` into a copy of `base`: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
