"""`BatchPipelineComponent`: a `build_batch_pipeline` pipeline declared in a `defs.yaml`.

    type: batch_assets.BatchPipelineComponent
    attributes:
      name: support_ticket_summaries
      source:
        jsonl_file: requests.jsonl   # beside this defs.yaml; or "{{ context.project_root }}/..."

`source` takes exactly one of `dataframe` (an upstream asset and a request template),
`jsonl_file` (a file of ready requests) and `iterator` (`"package.module:function"`). Every
other attribute is an argument of `build_batch_pipeline`, under the same name.

A mistake names the file, the line and the attribute (`defs.yaml:7 - attributes.max_attempts:
...`): besides the schema Dagster checks, the factory's own cheap checks run as validators here,
when the YAML is resolved, rather than inside `build_defs`, where Dagster reports no location.

The completion sensor is not part of what `build_defs` returns: Dagster copies every definition
a YAML component returns, and the copies of the one shared sensor would clash by name.
`batch_assets.definitions` adds one sensor per resource the loaded assets use
(`with_completion_sensors`).
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Self, Union, get_args, get_origin

import dagster as dg
import pydantic
from dagster.components.resolved.errors import ResolutionException
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo

from batch_assets.core.limits import BatchLimits, check_completion_window, check_endpoint
from batch_assets.core.request_template import TEMPLATE_ENDPOINTS, RequestTemplate
from batch_assets.core.storage import storage_location
from batch_assets.pipeline.arguments import (
    CacheMode,
    SupersededAction,
    check_cache_max_age,
    check_cache_mode,
    check_error_rate,
    check_kinds,
    check_max_attempts,
    check_max_cost,
    check_metadata,
    check_name,
    check_on_superseded,
    check_tags,
)
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.keys import DEFAULT_RESOURCE_KEY, RESOURCE_TAG
from batch_assets.pipeline.sensor import completion_sensor
from batch_assets.pipeline.sources import DataFrameSource, IteratorSource, JsonlFileSource

RequestFunction = Callable[[], Iterable[Mapping[str, Any]]]


def _located(context: dg.ResolutionContext, message: str, *tail: str | int) -> str:
    """`file:line - attributes.a.b: message` and the YAML snippet, or just the path and message
    when the YAML's positions are unknown."""
    path = [*context.path, *tail]
    text = f"{'.'.join(map(str, path))}: {message}"
    tree = context.source_position_tree
    if tree is None:
        return text
    source = tree.source_error(yaml_path=path, inline_error_message=message, value_error=True)
    return f"{source.file_name}:{source.start_line_no} - {text}\n{source.snippet}"


# Fields whose string is a value, not only a template: a JSON schema file's name.
_STRING_VALUES = frozenset({"response_format"})


def _is_container(annotation: Any) -> bool:
    return get_origin(annotation) in (dict, list) or (
        isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)
    )


@functools.cache
def _objects_not_strings(derived: type[pydantic.BaseModel]) -> type[pydantic.BaseModel]:
    """`derived` without the `| str` Dagster adds to the fields holding a nested model, a dict
    or a list.

    Dagster lets every field take a string, for `{{ }}` templates; on a nested model that makes
    a union, and an error inside it is reported at the union (`source:`), not at the field; on a
    dict or list, each error comes twice, once per member of the union. Scalars keep their
    `| str`, so `max_attempts: "{{ env.X }}"` still works.
    """
    fields: dict[str, Any] = {}
    for name, info in derived.model_fields.items():
        args = get_args(info.annotation)
        if (
            name not in _STRING_VALUES
            and get_origin(info.annotation) in (Union, UnionType)
            and str in args
            and sum(map(_is_container, args)) == 1
        ):
            # without `| None` too: JSON schema's anyOf would hide the inner error as well (the
            # default stays None, so the field can still be left out)
            kept = tuple(a for a in args if a not in (str, type(None)))
            info = FieldInfo.merge_field_infos(info, annotation=Union[kept])  # noqa: UP007
        fields[name] = (info.annotation, info)
    strict = pydantic.create_model(derived.__name__, __base__=dg.Model, **fields)
    strict.model_config["json_schema_extra"] = derived.model_config.get("json_schema_extra")
    return strict


class _Located(dg.Resolvable):
    """Re-raise a pydantic error of the resolved class as `file:line - attributes.x.y: msg`.

    Dagster locates the errors of the schema it derives, but every derived scalar field also
    takes a string (for `{{ }}` templates), so a wrong type, and every validator below, only
    fails when the class itself is built; Dagster would report that with no file or line.
    """

    @classmethod
    def model(cls) -> type[pydantic.BaseModel]:
        return _objects_not_strings(super().model())

    @classmethod
    def resolve_from_model(cls, context: dg.ResolutionContext, model: pydantic.BaseModel) -> Any:
        try:
            return super().resolve_from_model(context, model)
        except pydantic.ValidationError as exc:
            raise ResolutionException(
                "\n".join(
                    _located(context, err["msg"], *(p for p in err["loc"] if p != "__root__"))
                    for err in exc.errors()
                )
            ) from None


def _response_format(context: dg.ResolutionContext, value: Any) -> Any:
    """An inline JSON schema, or the name of a .json file beside the defs.yaml."""
    if not isinstance(value, str):
        return value
    path = context.resolve_source_relative_path(value)
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise ResolutionException(
            _located(context, f"cannot read the JSON schema file {path}: {error.strerror}")
        ) from None
    except json.JSONDecodeError as error:
        raise ResolutionException(
            _located(context, f"{path} is not JSON: {error.msg} at line {error.lineno}")
        ) from None


def _string_map(context: dg.ResolutionContext, value: dict[str, str]) -> dict[str, str]:
    """Metadata or tags: values with a `{{ }}` template rendered, as text; the others as they
    are. (Dagster's default would evaluate every value, so that `"1"` became the number 1.)"""
    return {
        key: str(context.at_path(key).resolve_value(text))
        if isinstance(text, str) and ("{{" in text or "{%" in text)
        else text
        for key, text in value.items()
    }


StringMap = Annotated[
    dict[str, str],
    dg.Resolver(_string_map, model_field_type=dict[str, str], inject_before_resolve=False),
]


def _jsonl_file(context: dg.ResolutionContext, value: str | None) -> str | None:
    """A path relative to the defs.yaml's folder made absolute; an absolute path or a URL
    (`s3://...`) as it is. Templates are rendered first: `{{ context.project_root }}/data/x`."""
    if value is None or "://" in value:
        return value
    return str(context.resolve_source_relative_path(value))


def _function(context: dg.ResolutionContext, value: str | None) -> RequestFunction | None:
    """`"package.module:function"` imported."""
    if value is None:
        return None
    module_name, sep, attribute = value.partition(":")
    if not sep or not module_name or not attribute:
        raise ResolutionException(
            _located(context, f"expected 'package.module:function', got {value!r}")
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ResolutionException(
            _located(context, f"cannot import {module_name!r}: {error}")
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ResolutionException(
            _located(context, f"{module_name!r} has no function {attribute!r}")
        )
    return function  # type: ignore[no-any-return]


_DURATION = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*([dhms]?)")
_SECONDS_PER_UNIT = {"d": 86_400, "h": 3_600, "m": 60, "s": 1, "": 1}
_TIMEDELTA = pydantic.TypeAdapter(timedelta)


def _parse_duration(value: object, setting: str) -> timedelta | None:
    """Seconds, `"7d"`, `"12h"`, `"30m"`, `"90s"`, or what pydantic reads as a timedelta (ISO 8601
    such as `"P1DT12H"`, `"1 day, 12:00:00"`); a ValueError naming `setting` otherwise."""
    if value is None or isinstance(value, timedelta):
        return value
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    try:
        if match:
            return timedelta(seconds=float(match[1]) * _SECONDS_PER_UNIT[match[2]])
        if not isinstance(value, bool):  # pydantic would read `true` as one second
            return _TIMEDELTA.validate_python(value)
    except (OverflowError, pydantic.ValidationError):
        pass
    raise ValueError(
        f"{setting} {value!r} is not a duration: give seconds, a number with d, h, m or s "
        '("7d", "12h", "30m", "90s") or ISO 8601 ("P1DT12H")'
    )


def _bare_off(context: dg.ResolutionContext, value: str | bool) -> str | bool:
    """`cache: off` unquoted, which YAML reads as false, as "off"."""
    return "off" if value is False else value


class TemplateModel(_Located, dg.Model):
    """How a DataFrame row becomes a request (`RequestTemplate`)."""

    endpoint: str = "/v1/chat/completions"
    model_name: str = Field(alias="model")  # a field named `model` shadows Resolvable.model()
    # passthrough: Jinja would turn `{{`/`}}` (literal braces to the template) into nothing
    user_template: Annotated[str, dg.Resolver.passthrough()]
    system_prompt: Annotated[str | None, dg.Resolver.passthrough()] = None
    params: dict[str, Any] = Field(default_factory=dict)
    response_format: Annotated[
        Any,
        dg.Resolver(
            _response_format,
            model_field_type=dict[str, Any] | str | None,
            inject_before_resolve=False,
        ),
    ] = None
    response_format_name: str = "response"
    custom_id_column: str = "custom_id"
    null_as_empty: bool = False

    @field_validator("endpoint")
    @classmethod
    def _template_endpoint(cls, value: str) -> str:
        if value not in TEMPLATE_ENDPOINTS:
            raise ValueError(f"templates support the endpoints {', '.join(TEMPLATE_ENDPOINTS)}")
        return value

    def build(self) -> RequestTemplate:
        """The `RequestTemplate` this describes."""
        return RequestTemplate(
            endpoint=self.endpoint,
            model=self.model_name,
            user_template=self.user_template,
            system_prompt=self.system_prompt,
            params=self.params,
            response_format=self.response_format,
            response_format_name=self.response_format_name,
            custom_id_column=self.custom_id_column,
            null_as_empty=self.null_as_empty,
        )

    @model_validator(mode="after")
    def _renders(self) -> Self:
        self.build()  # a TemplateError (a ValueError) becomes a located error
        return self


class DataFrameModel(_Located, dg.Model):
    """Requests rendered by `template` from the polars DataFrame of the asset `upstream`."""

    upstream: dg.ResolvedAssetKey  # "a/b" is AssetKey(["a", "b"])
    template: TemplateModel


class SourceModel(_Located, dg.Model):
    """Exactly one of the three ways in."""

    model_config = ConfigDict(arbitrary_types_allowed=True)  # the iterator is a function

    dataframe: DataFrameModel | None = None
    jsonl_file: Annotated[str | None, dg.Resolver(_jsonl_file, model_field_type=str | None)] = None
    iterator: Annotated[
        RequestFunction | None, dg.Resolver(_function, model_field_type=str | None)
    ] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [n for n in ("dataframe", "jsonl_file", "iterator") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of dataframe, jsonl_file and iterator; "
                f"got {', '.join(given) or 'none'}"
            )
        return self

    def build(self) -> DataFrameSource | JsonlFileSource | IteratorSource:
        """The factory's source."""
        if self.dataframe is not None:
            return DataFrameSource(self.dataframe.upstream, self.dataframe.template.build())
        if self.jsonl_file is not None:
            return JsonlFileSource(
                self.jsonl_file if "://" in self.jsonl_file else Path(self.jsonl_file)
            )
        assert self.iterator is not None
        return IteratorSource(self.iterator)


class LimitsModel(_Located, dg.Model):
    """How much one batch (one shard) may hold (`BatchLimits`)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    max_embedding_inputs: int = 50_000

    @field_validator("max_requests", "max_bytes", "max_embedding_inputs")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a positive integer")
        return value


class BatchPipelineScaffolder(dg.Scaffolder[pydantic.BaseModel]):
    """`dg scaffold defs batch_assets.BatchPipelineComponent <folder>`: a defs.yaml that loads
    as it is, reading a one-line requests.jsonl beside it."""

    def scaffold(self, request: dg.ScaffoldRequest[pydantic.BaseModel]) -> None:
        folder = request.target_path
        folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^a-z0-9_]", "_", folder.name.lower())
        if not name[:1].isalpha():
            name = f"pipeline_{name}"
        line = {
            "custom_id": "example-1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi."}]},
        }
        (folder / "requests.jsonl").write_text(json.dumps(line) + "\n")
        (folder / "defs.yaml").write_text(
            textwrap.dedent(f"""\
                type: {request.type_name}
                attributes:
                  name: {name}
                  source:
                    jsonl_file: requests.jsonl
                  max_attempts: 3
                  # cache: reuse            # or refresh, or off
                  # cache_max_age: 7d       # or seconds, 12h, 30m, 90s, P1DT12H
                  # cache_name: shared      # pipelines that name the same cache share it
                  # max_cost_usd: 5.0       # refuse a submission forecast above it
                  # on_superseded: cancel   # cancel the running batches a resubmission replaces
                  # schedule: "0 6 * * *"
                  # owners: ["team:data"]
                  # automation_condition: "{{{{ dg.AutomationCondition.eager() }}}}"
            """)
        )


@dg.scaffold_with(BatchPipelineScaffolder)
class BatchPipelineComponent(_Located, dg.Component, dg.Model):
    """An OpenAI Batch API pipeline (`build_batch_pipeline`) declared in YAML.

    Its assets are `<name>_requests`, `<name>_batch`, `<name>_output`, `<name>_errors`, and
    `<name>_results` for a dataframe source or `<name>_source_file` for a JSONL file. The
    completion sensor of its resource comes from `batch_assets.definitions`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)  # AutomationCondition, partitions

    name: str
    source: SourceModel
    endpoint: str | None = None
    completion_window: str = "24h"
    metadata: StringMap = Field(default_factory=dict)
    group_name: str | None = None
    description: str | None = None
    limits: LimitsModel = Field(default_factory=LimitsModel)
    max_error_rate: float = 0.05
    max_attempts: int = 3
    schedule: str | None = None
    storage_dir: str | None = None
    resource_key: str = DEFAULT_RESOURCE_KEY
    io_manager_key: str | None = None
    automation_condition: Annotated[
        dg.AutomationCondition[Any] | None, dg.Resolver.default(model_field_type=str | None)
    ] = None
    owners: list[str] = Field(default_factory=list)
    tags: StringMap = Field(default_factory=dict)
    kinds: list[str] = Field(default_factory=list)
    pool: str | None = None
    partitions_def: Annotated[
        dg.PartitionsDefinition[str] | None, dg.Resolver.default(model_field_type=str | None)
    ] = None
    cache: Annotated[CacheMode, dg.Resolver(_bare_off, model_field_type=CacheMode | bool)] = "reuse"
    cache_max_age: Annotated[
        timedelta | None,
        dg.Resolver.default(
            model_field_type=int | float | str | None,
            description='How old a cached answer may be: seconds, "7d", "12h", "30m", "90s" or '
            'ISO 8601 ("P1DT12H"); unset for any age.',
        ),
    ] = None
    cache_name: str | None = None
    max_cost_usd: float | None = None
    on_superseded: SupersededAction = "keep"

    # The factory's checks, as validators: not Field(ge=...) constraints, which Dagster copies
    # onto its `int | str` schema field, where a string value then fails with a TypeError that
    # names no file or line.

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        return check_name(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        check_endpoint(value)
        source = info.data.get("source")
        if isinstance(source, SourceModel) and source.dataframe is not None:
            template_endpoint = source.dataframe.template.endpoint
            if value != template_endpoint:
                raise ValueError(
                    f"endpoint {value!r} differs from the template's {template_endpoint!r}"
                )
        return value

    @field_validator("completion_window")
    @classmethod
    def _completion_window(cls, value: str) -> str:
        return check_completion_window(value)

    @field_validator("metadata")
    @classmethod
    def _metadata_room(cls, value: dict[str, str]) -> dict[str, str]:
        return check_metadata(value)

    @field_validator("max_error_rate")
    @classmethod
    def _rate(cls, value: float) -> float:
        return check_error_rate(value)

    @field_validator("max_attempts")
    @classmethod
    def _attempts(cls, value: int) -> int:
        return check_max_attempts(value)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                dg.ScheduleDefinition(name="check", cron_schedule=value, job_name="check")
            except dg.DagsterInvalidDefinitionError:
                raise ValueError(f"{value!r} is not a cron schedule of 5 fields") from None
        return value

    @field_validator("storage_dir")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is not None:
            storage_location(value, setting="storage_dir")  # a StorageError is a ValueError
        return value

    @field_validator("tags")
    @classmethod
    def _own_tags(cls, value: dict[str, str]) -> dict[str, str]:
        return check_tags(value)

    @field_validator("kinds")
    @classmethod
    def _few_kinds(cls, value: list[str]) -> list[str]:
        check_kinds(value)
        return value

    # `mode="before"`: pydantic's own Literal and timedelta errors would come first otherwise

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_mode(cls, value: str) -> CacheMode:
        return check_cache_mode(value)

    @field_validator("cache_max_age", mode="before")
    @classmethod
    def _cache_age(cls, value: object) -> timedelta | None:
        return check_cache_max_age(_parse_duration(value, "cache_max_age"))

    @field_validator("cache_name")
    @classmethod
    def _cache_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, setting="cache_name")

    @field_validator("max_cost_usd")
    @classmethod
    def _budget(cls, value: float | None) -> float | None:
        return check_max_cost(value)

    @field_validator("on_superseded", mode="before")
    @classmethod
    def _superseded(cls, value: str) -> SupersededAction:
        return check_on_superseded(value)

    def build_pipeline(self) -> dg.Definitions:
        """Everything `build_batch_pipeline` returns, its completion sensor included."""
        return build_batch_pipeline(
            self.name,
            self.source.build(),
            endpoint=self.endpoint,
            completion_window=self.completion_window,
            metadata=self.metadata,
            group_name=self.group_name,
            description=self.description,
            limits=BatchLimits(**self.limits.model_dump()),
            max_error_rate=self.max_error_rate,
            max_attempts=self.max_attempts,
            schedule=self.schedule,
            storage_dir=self.storage_dir,
            resource_key=self.resource_key,
            io_manager_key=self.io_manager_key,
            automation_condition=self.automation_condition,
            owners=self.owners,
            tags=self.tags,
            kinds=self.kinds,
            pool=self.pool,
            partitions_def=self.partitions_def,
            cache=self.cache,
            cache_max_age=self.cache_max_age,
            cache_name=self.cache_name,
            max_cost_usd=self.max_cost_usd,
            on_superseded=self.on_superseded,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The pipeline without its completion sensor (see `with_completion_sensors`)."""
        return without_sensors(self.build_pipeline())


def without_sensors(defs: dg.Definitions) -> dg.Definitions:
    """`defs` without its sensors: Dagster copies the definitions a YAML component returns, and
    the copies of the one shared completion sensor would clash by name."""
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        resources=defs.resources,
    )


def with_completion_sensors(defs: dg.Definitions) -> dg.Definitions:
    """`defs` and the completion sensor of every Batch API resource its pipelines' assets name
    (the `batch_assets/resource` tag). The sensor objects are shared (`completion_sensor` is
    cached), so those that Python pipelines already return are not added twice."""
    keys: set[str] = set()
    for item in defs.assets or ():
        specs: Sequence[dg.AssetSpec]
        if isinstance(item, dg.AssetsDefinition):
            specs = list(item.specs)
        elif isinstance(item, dg.AssetSpec):
            specs = [item]
        else:
            continue
        keys.update(spec.tags[RESOURCE_TAG] for spec in specs if RESOURCE_TAG in spec.tags)
    if not keys:
        return defs
    return dg.Definitions.merge(
        defs, dg.Definitions(sensors=[completion_sensor(key) for key in sorted(keys)])
    )
