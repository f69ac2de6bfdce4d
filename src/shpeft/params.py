"""`params.yaml` as one typed model: loading, layering, validation messages, generated schema.

`params.yaml` is Snakemake's configfile and DVC's params file at once. Further files given with
`--params` (Snakemake: `--configfile`) are deep-merged on top, the way Snakemake merges them:
mappings key by key, anything else replaced. The merged mapping is validated against `Params`,
whose sections are the typed configs of the steps that read them; `datasets.<id>` and
`methods.<id>` are unions over the registered data sources and methods. A mistake stops with one
line naming the file, the key path and what is allowed (with the nearest valid key for a
misspelt one). The JSON schema (`make schema`) and `config/README.md` are generated from here.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, create_model
from pydantic_core import ErrorDetails

from shpeft import paths
from shpeft.analysis.stats import PublishedResult, StatsConfig, TablesConfig
from shpeft.backbone.config import BackboneConfig
from shpeft.config import NAME_PATTERN, Name, Section, Unique, deep_merge
from shpeft.data import registry as data_registry
from shpeft.data.registry import DatasetConfig
from shpeft.errors import ShpeftError
from shpeft.methods import registry as method_registry
from shpeft.methods.registry import MethodConfig
from shpeft.paths import Layout
from shpeft.selection.importance import ScoreConfig
from shpeft.selection.masks import MaskConfig
from shpeft.study.config import StudyConfig
from shpeft.sweeps import Sweeps
from shpeft.tracking import TrackingConfig
from shpeft.train.config import FinetuneConfig
from shpeft.train.tuning import TuneConfig

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = ("params.yaml",)
#: Where `Params.raw_at` says a key path is absent.
ABSENT = None


class Grid(Section):
    """What runs: every dataset x method x seed."""

    datasets: Unique[list[Name]] = Field(min_length=1)
    """Datasets to run, each defined under `datasets`."""
    methods: Unique[list[Name]] = Field(min_length=1)
    """Methods to run, each defined under `methods`."""


class JobResources(Section):
    """What a cluster job of one step asks for."""

    runtime: int = Field(ge=1)
    """Minutes."""
    mem_mb: int = Field(ge=1)
    """Memory in MB."""


class Resources(Section):
    """Cluster requests of the heavy steps (profiles/slurm; local runs ignore them)."""

    prepare: JobResources = JobResources(runtime=60, mem_mb=16000)
    """Each prepare job (it decodes the whole dataset, with 4 threads)."""
    backbone: JobResources = JobResources(runtime=240, mem_mb=32000)
    """The backbone step (pretraining or downloading)."""
    score: JobResources = JobResources(runtime=60, mem_mb=16000)
    """Each score job."""
    tune: JobResources = JobResources(runtime=720, mem_mb=16000)
    """Each tune job (it trains every candidate recipe of one method on one dataset)."""
    finetune: JobResources = JobResources(runtime=240, mem_mb=16000)
    """Each finetune job, sweep runs included."""
    study: JobResources = JobResources(runtime=60, mem_mb=32000)
    """Each study job (it scores the validation and test splits once per share)."""


class ParamsBase(Section):
    """Every section of `params.yaml`; `datasets` and `methods` are added by `params_model`."""

    experiment: Name = "default"
    """The experiment: its outputs go under `results/<experiment>/` and its runs into the MLflow
    experiment of that name, so studies in one checkout keep apart."""
    grid: Grid
    """What runs."""
    datasets: dict[Name, DatasetConfig]
    """Datasets by name, each read by its `source`."""
    methods: dict[Name, MethodConfig]
    """Methods by name, each a `kind` and its options."""
    seeds: Unique[list[Annotated[int, Field(ge=0)]]] = Field(min_length=1)
    """Seeds of every run (training order, augmentation, the head's initialisation)."""
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    """The pretrained ViT."""
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    """How every run trains (`methods.<id>.finetune` overrides keys per method)."""
    tune: TuneConfig = Field(default_factory=TuneConfig)
    """Per-method recipe tuning on the validation split, per dataset."""
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    """Importance scoring per dataset."""
    masks: dict[Name, MaskConfig] = {}
    """Mask variants built per dataset, by name."""
    stats: StatsConfig = Field(default_factory=StatsConfig)
    """Statistics of the tables."""
    tables: TablesConfig = Field(default_factory=TablesConfig)
    """What the main table shows."""
    published: list[PublishedResult] = []
    """Results from the literature, shown as marked reference rows of the main table."""
    sweeps: Sweeps = Field(default_factory=Sweeps)
    """Budget and hybrid-ratio sweeps."""
    study: StudyConfig = Field(default_factory=StudyConfig)
    """The sparsity and hybridity study of full fine-tuning's change, per dataset and seed."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """MLflow tracking."""
    resources: Resources = Field(default_factory=Resources)
    """Cluster requests per step."""

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    _files: list[str] = PrivateAttr(default_factory=list)

    @property
    def raw(self) -> dict[str, Any]:
        """The merged mapping as the files state it (what Snakemake and DVC compare)."""
        return self._raw

    @property
    def layout(self) -> Layout:
        """Where this experiment's files go."""
        return paths.layout(self.experiment)

    @property
    def files(self) -> list[str]:
        """The layered params files, in order."""
        return self._files

    def at(self, path: str) -> Any:
        """The typed value at a key path such as `methods.lora` (`*`: everything)."""
        if path == "*":
            return self
        node: Any = self
        for part in path.split("."):
            keys = list(node) if isinstance(node, dict) else list(type(node).model_fields)
            if part not in keys:
                raise ShpeftError(
                    f"{' + '.join(self.files) or 'params'}: no key '{path}'"
                    f"{_suggest(part, keys)} (defined: {', '.join(keys) or 'none'})"
                )
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        return node

    def raw_at(self, path: str) -> Any:
        """The value at a key path as the files state it (ABSENT where they do not)."""
        if path == "*":
            return self.raw
        node: Any = self.raw
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return ABSENT
            node = node[part]
        return node

    def sweep_datasets(self, sweep: str) -> list[str]:
        """The datasets a sweep runs on: those it names, else every dataset of the grid."""
        return getattr(self.sweeps, sweep).datasets or self.grid.datasets

    def sweep_method(self, sweep: str) -> str:
        return self.at(f"sweeps.{sweep}.method")

    def mask_seed(self, seed: int | str) -> str:
        """The scoring seed of the masks a run with `seed` trains on (a DVC placeholder passes
        through): its own, or the one shared `score.seed`."""
        return str(seed) if self.score.seed is None else str(self.score.seed)

    def mask_seeds(self) -> list[int]:
        """The scoring seeds the grid's runs and tune jobs need: each seed's, or the shared one."""
        if self.score.seed is not None:
            return [self.score.seed]
        tuning = self.tune.seeds_of(self.seeds) if self.tune.enabled else []
        return list(dict.fromkeys([*self.seeds, *tuning]))

    def score_seeds(self) -> list[int]:
        """Every scoring seed: the grid's masks' and the sweeps'."""
        sweeping = [s for sweep in self.sweeps.active() for s in self.sweep_mask_seeds(sweep)]
        return list(dict.fromkeys([*self.mask_seeds(), *sweeping]))

    def sweep_mask_seeds(self, sweep: str) -> list[int]:
        """The scoring seeds of a sweep's masks: its seeds, or the one shared `score.seed`."""
        if self.score.seed is not None:
            return [self.score.seed]
        return getattr(self.sweeps, sweep).seeds

    def tuned_methods(self) -> list[str]:
        """The methods the `tune` step tunes (none while `tune.enabled` is off): the grid's and
        the sweeps' (a sweep point trains with its method's tuned recipe)."""
        if not self.tune.enabled:
            return []
        sweeping = [self.sweep_method(sweep) for sweep in self.sweeps.active()]
        return list(dict.fromkeys([*self.grid.methods, *sweeping]))

    def hindsight_methods(self) -> list[str]:
        """The grid's references that train on the oracle mask (`sparse-oracle`)."""
        known = method_registry.methods()
        return [m for m in self.grid.methods if known[self.methods[m].kind].hindsight]

    def study_datasets(self) -> list[str]:
        """The datasets the study runs on: every one of the grid's, while it is enabled and
        the grid holds `study.method`."""
        runs = self.study.enabled and self.study.method in self.grid.methods
        return self.grid.datasets if runs else []

    def oracle_datasets(self) -> list[str]:
        """The datasets that need an oracle mask: every one, while a reference trains on it."""
        return self.grid.datasets if self.hindsight_methods() else []

    def sweep_variant(self, sweep: str) -> str:
        """The mask variant a sweep rebuilds: its method's."""
        return self.methods[self.sweep_method(sweep)].mask

    def references(self) -> Iterator[tuple[str, str]]:
        """Cross-references the types cannot check: (key path, what is wrong)."""
        for key, section in (("datasets", self.datasets), ("methods", self.methods)):
            for name in getattr(self.grid, key):
                if name not in section:
                    defined = ", ".join(sorted(section)) or "none"
                    yield f"grid.{key}", f"'{name}' is not defined under '{key}' ({defined})"
        sweeping = {sweep.method for sweep in self.sweeps.active().values()}
        for name in dict.fromkeys([*self.grid.methods, *sorted(sweeping & set(self.methods))]):
            yield from self._mask_references(name)
        for name, sweep in self.sweeps.active().items():
            yield from self._sweep_references(name, sweep)
        yield from self._study_references()
        for index, result in enumerate(self.published):
            if result.dataset not in self.datasets:
                defined = ", ".join(sorted(self.datasets))
                yield (
                    f"published.{index}.dataset",
                    f"'{result.dataset}' is not defined under 'datasets' ({defined})",
                )

    def _study_references(self) -> Iterator[tuple[str, str]]:
        """The study reads the runs of `study.method` and `study.mask`'s budget; a reference
        with hindsight cannot train without them."""
        hindsight = self.hindsight_methods()
        if hindsight and self.study.method not in self.grid.methods:
            yield (
                "study.method",
                f"'{self.study.method}' is not in grid.methods, but {', '.join(hindsight)} "
                "trains on the change of its runs: add it to the grid",
            )
        if not (hindsight or self.study_datasets()):
            return
        method = self.methods[self.study.method]
        if method.kind != "full":
            yield "study.method", f"'{self.study.method}' is kind {method.kind}, not full"
        if self.study.mask not in self.masks:
            defined = ", ".join(sorted(self.masks)) or "none"
            yield "study.mask", f"no mask variant '{self.study.mask}' under 'masks' ({defined})"

    def _mask_references(self, name: str) -> Iterator[tuple[str, str]]:
        method = self.methods.get(name)
        variant = getattr(method, "mask", None)
        if variant is None:
            return
        if variant not in self.masks:
            defined = ", ".join(sorted(self.masks)) or "none"
            yield f"methods.{name}.mask", f"no mask variant '{variant}' under 'masks' ({defined})"
            return
        owned = getattr(method_registry.methods()[method.kind], "own_rule", {})
        mask = self.masks[variant]
        wrong = {k: getattr(mask, k) for k, v in owned.items() if getattr(mask, k) != v}
        if wrong:
            yield (
                f"methods.{name}.mask",
                f"kind '{method.kind}' trains its own selection ({_settings(owned)}), but "
                f"masks.{variant} has {_settings(wrong)}",
            )
        if mask.loss not in self.score.losses:
            yield (
                f"masks.{variant}.loss",
                f"'{mask.loss}' is not among score.losses ({', '.join(self.score.losses)})",
            )

    def _sweep_references(self, name: str, sweep: Any) -> Iterator[tuple[str, str]]:
        method = self.methods.get(sweep.method)
        if getattr(method, "mask", None) is None:
            yield f"sweeps.{name}.method", f"'{sweep.method}' is not a method with a mask"
            return
        if name in getattr(method_registry.methods()[method.kind], "own_rule", {}):
            yield (
                f"sweeps.{name}.method",
                f"kind '{method.kind}' fixes {name} in its own selection: sweep another method",
            )
        outside = sorted(set(sweep.datasets or []) - set(self.grid.datasets))
        if outside or sweep.datasets == []:
            yield (
                f"sweeps.{name}.datasets",
                f"{', '.join(outside) or 'none given'}: a sweep runs on datasets of "
                "grid.datasets (the grid's score step rates their weights); name some of them, "
                f"or unset it (sweeps: {{{name}: {{datasets: null}}}}) to sweep every one",
            )


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items())


@functools.cache
def _model(methods: tuple[type, ...], sources: tuple[type, ...]) -> type[ParamsBase]:
    return create_model(
        "Params",
        __base__=ParamsBase,
        __doc__="shpeft's parameters (params.yaml): Snakemake's configfile and DVC's params file.",
        datasets=(dict[Name, data_registry.config_union()], _described("datasets")),
        methods=(dict[Name, method_registry.config_union()], _described("methods")),
    )


def _described(field: str) -> Any:
    return Field(description=ParamsBase.model_fields[field].description)


def params_model() -> type[ParamsBase]:
    """The `Params` model over the data sources and methods registered now."""
    methods = tuple(cls.config_model for cls in method_registry.methods().values())
    sources = tuple(source.config_model for source in data_registry.sources().values())
    return _model(methods, sources)


#: What `load` and `validate` return (a `params_model()` instance); for type hints.
Params = ParamsBase


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ShpeftError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ShpeftError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ShpeftError(f"{path}: the top level must be a mapping of sections")
    return data


def load(files: Sequence[str | Path] = DEFAULT_PARAMS) -> ParamsBase:
    """Read, deep-merge in order, and validate the given params files."""
    layers = [(str(path), read_yaml(path)) for path in files]
    raw: dict[str, Any] = {}
    for _, data in layers:
        raw = deep_merge(raw, data)
    params = validate(raw, layers)
    keep_the_base_experiment(layers, raw)
    return params


def keep_the_base_experiment(layers: Sequence[tuple[str, dict[str, Any]]], raw: dict) -> None:
    """Overlays that bring other data or another backbone than the first file's experiment must
    name an experiment of their own: otherwise their study would overwrite that one's (the
    demo's, for `params.yaml`) in `results/<experiment>/` and its MLflow runs. Narrowing the grid
    or changing a recipe stays within the experiment."""
    if len(layers) < 2:
        return
    base_file, base = layers[0]
    name = raw.get("experiment", "default")
    if name != base.get("experiment", "default"):
        return
    base_data = base.get("datasets", {})
    base_grid = base.get("grid", {}).get("datasets", [])
    other = [
        f"datasets.{d}"
        for d in raw.get("grid", {}).get("datasets", [])
        if d not in base_grid or raw["datasets"][d] != base_data.get(d)
    ]
    if raw.get("backbone") != base.get("backbone"):
        other.append("backbone")
    if other:
        raise ShpeftError(
            f"{layers[-1][0]}: key 'experiment': the overlays change {', '.join(other)} of "
            f"{base_file}'s experiment '{name}' and would overwrite its outputs in "
            f"{paths.layout(name).root}/; name an experiment of their own (experiment: my-study)"
        )


def validate(raw: dict[str, Any], layers: Sequence[tuple[str, dict[str, Any]]] = ()) -> ParamsBase:
    """The typed params of a merged mapping; `layers` (file, its mapping) name the file at fault."""
    layers = list(layers) or [("params", raw)]
    try:
        params = params_model().model_validate(raw)
    except ValidationError as exc:
        error = min(exc.errors(), key=lambda e: _rank(e))
        path, message = _describe(error, raw)
        raise ShpeftError(f"{_file_of(path, layers)}: key '{path}': {message}") from None
    for path, message in params.references():
        raise ShpeftError(f"{_file_of(path, layers)}: key '{path}': {message}")
    params._raw, params._files = raw, [file for file, _ in layers]
    return params


def _rank(error: ErrorDetails) -> tuple[int, int]:
    """Report unknown keys and wrong values before the missing keys they may cause."""
    return (error["type"] == "missing", -len(error["loc"]))


def _key_path(loc: tuple[Any, ...], raw: Any) -> tuple[str, list[str]]:
    """The key path of an error location as the files spell it (pydantic adds the union tags of
    `kind` and `source` entries, and `[key]` for a refused mapping key), and its parts."""
    parts: list[str] = []
    node = raw
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and part in (node.get("kind"), node.get("source")):
            continue  # the tag of a tagged union
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
        parts.append(str(part).encode("unicode_escape").decode())  # a name ending in "\n"
    return ".".join(parts) or "(top level)", parts


def _describe(error: ErrorDetails, raw: dict[str, Any]) -> tuple[str, str]:
    path, parts = _key_path(error["loc"], raw)
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1], raw)
        return path, f"unknown key{_suggest(parts[-1], allowed)}; allowed: {', '.join(allowed)}"
    if kind == "missing":
        return path, "required, but missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = str(ctx.get("discriminator", "")).strip("'")
        expected = sorted(set().union(*(_tags(m)[-1] for m in _union_at(error["loc"], raw))))
        given = ctx.get("tag")
        if given is None:
            return f"{path}.{tag}", f"required: one of {', '.join(sorted(expected))}"
        return (
            f"{path}.{tag}",
            f"'{given}' is not one of {', '.join(sorted(expected))}{_suggest(given, expected)}",
        )
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return path, (
            f"the name {value!r} is refused: names are 1 to 64 letters, digits, '_' or '-', "
            "starting with a letter or digit (they become paths and shell arguments)"
        )
    message = error["msg"].removeprefix("Value error, ")
    message = message[0].lower() + message[1:]
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message += _suggest(str(value), expected)
    if (
        kind == "float_type"
        and isinstance(value, str)
        and re.fullmatch(r"[-+.\d]+e[-+]?\d+", value)
    ):
        message += f" (YAML reads {value} as text: write it with a decimal point, e.g. 1.0e-5)"
    return path, f"{value!r} is refused: {message}"


def _suggest(given: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(given), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_at(loc: tuple[Any, ...], raw: dict[str, Any]) -> Any:
    """The type expected at `loc`, following field types, mappings and union tags."""
    node: Any = params_model()
    data: Any = raw
    for part in loc:
        if isinstance(data, dict) and isinstance(node, type) and issubclass(node, BaseModel):
            node, data = unwrap(node.model_fields[part].annotation), data.get(part)
        elif typing.get_origin(node) is dict:
            node, data = unwrap(typing.get_args(node)[1]), data.get(part)
        elif typing.get_origin(node) in (typing.Union, types.UnionType):
            node = next(m for m in typing.get_args(node) if {part} in _tags(m))
    return node


def _allowed_keys(loc: tuple[Any, ...], raw: dict[str, Any]) -> list[str]:
    """The keys of the section at `loc`."""
    node = _type_at(loc, raw)
    return sorted(node.model_fields) if isinstance(node, type) else []


def _union_at(loc: tuple[Any, ...], raw: dict[str, Any]) -> tuple[type[BaseModel], ...]:
    """The members of the tagged union at `loc` (a `methods.<id>` or `datasets.<id>` entry)."""
    return typing.get_args(_type_at(loc, raw))


def unwrap(annotation: Any) -> Any:
    """The type inside `Annotated[...]` and `X | None` (an override's optional section)."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
            None
        ) in typing.get_args(annotation):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _tags(model: type[BaseModel]) -> list[set[str]]:
    """The values each possible union tag (`kind`, `source`) may take in `model`."""
    return [
        set(typing.get_args(model.model_fields[name].annotation))
        for name in ("kind", "source")
        if name in model.model_fields
    ]


def _file_of(path: str, layers: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The last file that states the deepest part of `path` (the first file if none does)."""
    best, depth = layers[0][0], 0
    for file, data in layers:
        node, found = data, 0
        for part in path.split("."):
            if isinstance(node, dict) and part in node:
                node, found = node[part], found + 1
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node, found = node[int(part)], found + 1
            else:
                break
        if found and found >= depth:
            best, depth = file, found
    return best
