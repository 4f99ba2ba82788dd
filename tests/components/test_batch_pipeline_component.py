"""`BatchPipelineComponent` loaded from YAML: the support_tickets example, each source kind, and
the completion sensors `batch_assets.definitions` adds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from batch_assets import BatchPipelineComponent
from batch_assets.components import batch_pipeline
from batch_assets.components.batch_pipeline import with_completion_sensors
from batch_assets.core.limits import BatchLimits
from batch_assets.core.request_cache import CACHE_KEY, CACHED_AT, ENTRY_SCHEMA, request_key
from batch_assets.core.request_template import RequestTemplate
from batch_assets.definitions import defs as project_defs
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.keys import CACHE_HITS_KEY, PIPELINE_TAG, RESOURCE_TAG
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sensor import completion_sensor
from batch_assets.pipeline.sources import DataFrameSource, IteratorSource, JsonlFileSource
from batch_assets.project import DATA_DIR, PROJECT_ROOT
from tests.components.conftest import Loader, write_yaml

SCHEMA = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "1"]}},
    "required": ["sentiment"],
    "additionalProperties": False,
}
TEMPLATE = RequestTemplate(
    endpoint="/v1/chat/completions",
    model="gpt-4o-mini",
    system_prompt="Label the review {{as JSON}}.",
    user_template="Review: {text} {{literal braces}}",
    params={"temperature": 0},
    response_format=SCHEMA,
    response_format_name="sentiment",
    custom_id_column="review_id",
)
DATAFRAME_YAML = """
name: reviews
source:
  dataframe:
    upstream: raw/reviews
    template:
      model: gpt-4o-mini
      system_prompt: "Label the review {{as JSON}}."
      user_template: "Review: {text} {{literal braces}}"
      params: {temperature: 0}
      response_format: RESPONSE_FORMAT
      response_format_name: sentiment
      custom_id_column: review_id
group_name: reviews
schedule: "0 6 * * *"
owners: ["team:data", "someone@example.com"]
tags: {tier: "1"}
kinds: [polars]
pool: reviews_pool
max_attempts: 2
metadata:
  env: "{{ env('BATCH_ASSETS_TEST_ENV', 'dev') }}"
automation_condition: "{{ dg.AutomationCondition.eager() }}"
"""


def catalog_rows() -> Iterator[dict[str, Any]]:
    """An iterator source for the YAML below (`tests.components....:catalog_rows`)."""
    yield {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small", "input": "x"},
    }


def specs_by_key(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    """Every asset spec the definitions hold, by key."""
    found: dict[str, dg.AssetSpec] = {}
    for item in defs.assets or ():
        specs = item.specs if isinstance(item, dg.AssetsDefinition) else [item]
        for spec in specs:
            assert isinstance(spec, dg.AssetSpec)
            found[spec.key.to_user_string()] = spec
    return found


def own_metadata(spec: dg.AssetSpec) -> dict[str, Any]:
    """Metadata without what Dagster adds to a YAML component's assets."""
    return {key: value for key, value in spec.metadata.items() if not key.startswith("dagster/")}


def test_support_tickets_yaml_builds_what_the_python_pipeline_built() -> None:
    loaded = specs_by_key(project_defs())
    python = specs_by_key(
        build_batch_pipeline(
            "support_ticket_summaries",
            JsonlFileSource(DATA_DIR / "support_ticket_requests.jsonl"),
            endpoint="/v1/chat/completions",
            group_name="support_tickets",
            metadata={"example": "support_tickets"},
            description="One-sentence summaries and next actions for support tickets.",
        )
    )
    assert {key for key in loaded if key.startswith("support_ticket")} == set(python)
    for key, spec in python.items():
        yaml_spec = loaded[key]
        assert yaml_spec.group_name == spec.group_name == "support_tickets"
        assert yaml_spec.code_version == spec.code_version, key  # the same absolute data path
        assert yaml_spec.description == spec.description
        assert yaml_spec.tags == spec.tags
        assert yaml_spec.kinds == spec.kinds
        assert own_metadata(yaml_spec) == own_metadata(spec)
        assert "dagster/component_origin" in yaml_spec.metadata  # loaded from the YAML
    # `{{ context.project_root }}/data/...` in the YAML is the project's data folder
    assert loaded["support_ticket_summaries_source_file"].metadata["path"] == dg.MetadataValue.path(
        str(DATA_DIR / "support_ticket_requests.jsonl")
    )


def test_the_project_lists_the_component_in_its_tree() -> None:
    tree = dg.ComponentTree.for_project(PROJECT_ROOT)
    component = tree.load_component(Path("support_tickets"))
    assert isinstance(component, BatchPipelineComponent)
    assert component.source.jsonl_file == str(DATA_DIR / "support_ticket_requests.jsonl")


@pytest.mark.parametrize("response_format", ["inline", "file"])
def test_dataframe_source(load: Loader, response_format: str) -> None:
    if response_format == "inline":
        attributes = DATAFRAME_YAML.replace("RESPONSE_FORMAT", json.dumps(SCHEMA))
        files: dict[str, str] = {}
    else:
        attributes = DATAFRAME_YAML.replace("RESPONSE_FORMAT", "sentiment.schema.json")
        files = {"sentiment.schema.json": json.dumps(SCHEMA)}
    component, defs = load(attributes, files)

    assert isinstance(component, BatchPipelineComponent)
    assert component.source.dataframe is not None
    template = component.source.dataframe.template.build()
    assert template == TEMPLATE  # prompts kept verbatim: `{{`/`}}` are not Jinja here
    assert component.source.dataframe.upstream == dg.AssetKey(["raw", "reviews"])

    specs = specs_by_key(defs)
    assert set(specs) == {
        "reviews_requests",
        "reviews_batch",
        "reviews_output",
        "reviews_errors",
        "reviews_results",
    }
    eager = dg.AutomationCondition.eager()
    for key, spec in specs.items():
        assert spec.group_name == "reviews"
        assert list(spec.owners) == ["team:data", "someone@example.com"]
        assert spec.tags["tier"] == "1", key  # a string, not the number Jinja would make of it
        assert spec.tags[PIPELINE_TAG] == "reviews"
        assert "polars" in spec.kinds
        assert spec.automation_condition == (
            eager if key in ("reviews_requests", "reviews_batch") else None
        ), key
    assert specs["reviews_requests"].deps[0].asset_key == dg.AssetKey(["raw", "reviews"])

    python = build_batch_pipeline(
        "reviews", DataFrameSource(dg.AssetKey(["raw", "reviews"]), TEMPLATE)
    )
    assert specs["reviews_requests"].code_version == (
        specs_by_key(python)["reviews_requests"].code_version
    )
    assert defs.schedules is not None
    [schedule] = defs.schedules
    assert isinstance(schedule, dg.ScheduleDefinition)
    assert schedule.cron_schedule == "0 6 * * *"
    assert component.metadata == {"env": "dev"}
    assert component.pool == "reviews_pool"
    assert component.max_attempts == 2
    assert not defs.sensors  # the code location adds the one completion sensor


def test_jsonl_file_source_relative_to_the_yaml_folder(load: Loader) -> None:
    line = {"custom_id": "1", "method": "POST", "url": "/v1/embeddings", "body": {}}
    component, defs = load(
        """
        name: tickets
        source:
          jsonl_file: requests.jsonl
        endpoint: /v1/embeddings
        limits: {max_requests: 100}
        resource_key: other_api
        """,
        {"requests.jsonl": json.dumps(line) + "\n"},
        name="tickets",
    )
    assert isinstance(component, BatchPipelineComponent)
    folder = Path(str(component.source.jsonl_file)).parent
    assert (folder / "defs.yaml").exists()
    specs = specs_by_key(defs)
    assert set(specs) == {
        "tickets_source_file",
        "tickets_requests",
        "tickets_batch",
        "tickets_output",
        "tickets_errors",
    }
    assert specs["tickets_requests"].tags[RESOURCE_TAG] == "other_api"
    assert specs["tickets_source_file"].metadata["path"] == dg.MetadataValue.path(
        str(folder / "requests.jsonl")
    )
    assert (
        specs["tickets_requests"].code_version
        == specs_by_key(
            build_batch_pipeline(
                "tickets",
                JsonlFileSource(folder / "requests.jsonl"),
                endpoint="/v1/embeddings",
                limits=BatchLimits(max_requests=100),
            )
        )["tickets_requests"].code_version
    )


def test_a_url_is_kept_as_it_is(load: Loader) -> None:
    component, _ = load("name: remote\nsource:\n  jsonl_file: s3://bucket/requests.jsonl\n")
    assert isinstance(component, BatchPipelineComponent)
    assert component.source.jsonl_file == "s3://bucket/requests.jsonl"
    source = component.source.build()
    assert isinstance(source, JsonlFileSource)
    assert source.path == "s3://bucket/requests.jsonl"


def test_iterator_source(load: Loader) -> None:
    component, defs = load(
        f"""
        name: catalog
        source:
          iterator: {__name__}:catalog_rows
        endpoint: /v1/embeddings
        description: Embeddings.
        """
    )
    assert isinstance(component, BatchPipelineComponent)
    assert component.source.iterator is catalog_rows
    specs = specs_by_key(defs)
    assert set(specs) == {"catalog_requests", "catalog_batch", "catalog_output", "catalog_errors"}
    assert all(spec.automation_condition is None for spec in specs.values())
    assert all(not spec.owners for spec in specs.values())
    assert (
        specs["catalog_requests"].code_version
        == specs_by_key(
            build_batch_pipeline("catalog", IteratorSource(catalog_rows), endpoint="/v1/embeddings")
        )["catalog_requests"].code_version
    )


def test_yaml_pipelines_share_one_sensor_with_the_python_ones(sandbox: Any) -> None:
    for name, resource_key in (("one", "openai_batch"), ("two", "openai_batch"), ("three", "b")):
        write_yaml(
            sandbox,
            name,
            f"name: {name}\nsource:\n  jsonl_file: r.jsonl\nresource_key: {resource_key}\n",
        )
    with sandbox.build_all_defs() as loaded:
        assert not loaded.sensors
        python = build_batch_pipeline("py", IteratorSource(catalog_rows))
        merged = with_completion_sensors(
            dg.Definitions.merge(
                loaded,
                python,
                dg.Definitions(
                    resources={"openai_batch": OpenAIBatchResource(), "b": OpenAIBatchResource()}
                ),
            )
        )
    dg.Definitions.validate_loadable(merged)
    sensors = sorted(merged.get_repository_def().sensor_defs, key=lambda sensor: sensor.name)
    assert sensors == [
        completion_sensor("openai_batch"),
        completion_sensor("b"),
    ]  # the same objects


def test_the_code_location_has_one_completion_sensor() -> None:
    definitions = project_defs()
    # the Python pipelines return the very object the code location adds: merged, not repeated
    assert {id(sensor) for sensor in definitions.sensors or ()} == {
        id(completion_sensor("openai_batch"))
    }
    assert list(definitions.get_repository_def().sensor_defs) == [completion_sensor("openai_batch")]
    assert definitions.component_tree is not None  # kept through the merge


def test_a_partitioned_pipeline_with_a_file_per_partition(load: Loader) -> None:
    line = {"custom_id": "1", "method": "POST", "url": "/v1/embeddings", "body": {}}
    component, defs = load(
        """
        name: daily_files
        source:
          jsonl_file: "requests-{partition_key}.jsonl"
        endpoint: /v1/embeddings
        partitions_def: "{{ dg.StaticPartitionsDefinition(['a', 'b']) }}"
        """,
        {f"requests-{key}.jsonl": json.dumps(line) + "\n" for key in ("a", "b")},
        name="daily_files",
    )
    assert isinstance(component, BatchPipelineComponent)
    assert component.partitions_def == dg.StaticPartitionsDefinition(["a", "b"])
    specs = specs_by_key(defs)
    for key in ("daily_files_requests", "daily_files_batch", "daily_files_output"):
        assert specs[key].partitions_def == dg.StaticPartitionsDefinition(["a", "b"]), key


CHAT_LINE: dict[str, Any] = {
    "custom_id": "1",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi."}]},
}


def checks_by_name(defs: dg.Definitions) -> dict[str, dg.AssetCheckSpec]:
    """Every asset check the definitions hold, by name (a YAML component's copies of the checks
    are plain AssetsDefinitions)."""
    return {
        spec.name: spec
        for checks in defs.asset_checks or ()
        if isinstance(checks, dg.AssetsDefinition)
        for spec in checks.check_specs
    }


def test_max_cost_usd_adds_a_blocking_budget_check(load: Loader) -> None:
    component, defs = load("name: priced\nsource:\n  jsonl_file: r.jsonl\nmax_cost_usd: 2.5\n")
    assert isinstance(component, BatchPipelineComponent)
    assert component.max_cost_usd == 2.5
    check = checks_by_name(defs)["cost_within_budget"]
    assert check.asset_key == dg.AssetKey("priced_requests")
    assert check.blocking
    assert check.description is not None and "$2.5 " in check.description

    _, unpriced = load("name: unpriced\nsource:\n  jsonl_file: r.jsonl\n", name="unpriced")
    assert "cost_within_budget" not in checks_by_name(unpriced)


CACHE_ATTRIBUTES = ("cache", "cache_max_age", "cache_name", "max_cost_usd", "on_superseded")


def test_the_cache_attributes_reach_the_factory(
    load: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: dict[str, Any] = {}

    def spy(*args: Any, **kwargs: Any) -> dg.Definitions:
        received.update(kwargs)
        return build_batch_pipeline(*args, **kwargs)

    monkeypatch.setattr(batch_pipeline, "build_batch_pipeline", spy)
    load(
        """
        name: cached
        source:
          jsonl_file: r.jsonl
        cache: off
        cache_max_age: 7d
        cache_name: team
        max_cost_usd: 2.5
        on_superseded: cancel
        """
    )
    assert {key: received[key] for key in CACHE_ATTRIBUTES} == {
        "cache": "off",  # a bare `off`, which YAML reads as false
        "cache_max_age": timedelta(days=7),
        "cache_name": "team",
        "max_cost_usd": 2.5,
        "on_superseded": "cancel",
    }


def test_the_factory_defaults_when_the_cache_attributes_are_left_out(load: Loader) -> None:
    component, _ = load("name: plain\nsource:\n  jsonl_file: r.jsonl\n")
    assert isinstance(component, BatchPipelineComponent)
    assert {key: getattr(component, key) for key in CACHE_ATTRIBUTES} == {
        "cache": "reuse",
        "cache_max_age": None,
        "cache_name": None,
        "max_cost_usd": None,
        "on_superseded": "keep",
    }


@pytest.mark.parametrize(
    ("written", "age"),
    [
        ('"7d"', timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("3600", timedelta(hours=1)),
        ("0.5", timedelta(milliseconds=500)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ('"1 day, 12:00:00"', timedelta(days=1, hours=12)),
        ("\"{{ env('BATCH_ASSETS_TEST_MAX_AGE', '2d') }}\"", timedelta(days=2)),
    ],
)
def test_cache_max_age_forms(load: Loader, written: str, age: timedelta) -> None:
    component, _ = load(f"name: aged\nsource:\n  jsonl_file: r.jsonl\ncache_max_age: {written}\n")
    assert isinstance(component, BatchPipelineComponent)
    assert component.cache_max_age == age


BACKEND = "batch.example.invalid:8765"


def materialize_requests(defs: dg.Definitions, name: str) -> dict[str, Any]:
    """Materialize `<name>_requests` alone (no Batch API is called) and return its metadata."""
    resource = OpenAIBatchResource(api_key="sk-test", base_url=f"http://{BACKEND}/v1")
    runnable = dg.Definitions.merge(defs, dg.Definitions(resources={"openai_batch": resource}))
    job = runnable.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(f"{name}_requests")]
        )
    [materialization] = result.asset_materializations_for_node(f"{name}_requests")
    return {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}


def test_the_named_cache_and_its_max_age_decide_what_the_requests_asset_reuses(
    load: Loader, tmp_path: Path
) -> None:
    storage = tmp_path / "generated"
    team = storage / "request_cache" / "team" / BACKEND.replace(":", "_")  # per backend
    team.mkdir(parents=True)
    (team / "segments").mkdir()
    pl.DataFrame(
        [
            {
                CACHE_KEY: request_key(CHAT_LINE["url"], CHAT_LINE["body"]),
                "status_code": 200,
                "model": "gpt-4o-mini",
                "answer": "Hello.",
                CACHED_AT: datetime.now(UTC) - timedelta(days=8),
            }
        ],
        schema=ENTRY_SCHEMA,
    ).write_parquet(team / "segments" / "earlier.parquet")
    files = {"requests.jsonl": json.dumps(CHAT_LINE) + "\n"}

    def requests_metadata(name: str, attributes: str) -> dict[str, Any]:
        _, defs = load(
            f"name: {name}\nsource:\n  jsonl_file: requests.jsonl\n"
            f"storage_dir: {json.dumps(str(storage))}\n{attributes}",
            files,
            name=name,
        )
        return materialize_requests(defs, name)

    # the answer is 8 days old: too old for a week, and anything goes without a limit
    week = requests_metadata("weekly", "cache_name: team\ncache_max_age: 7d\n")
    assert (week[CACHE_HITS_KEY], week["submitted_requests"]) == (0, 1)
    any_age = requests_metadata("any_age", "cache_name: team\n")
    assert (any_age[CACHE_HITS_KEY], any_age["submitted_requests"]) == (1, 0)
    # `cache: "off"` neither reads the cache nor writes one of its own
    off = requests_metadata("uncached", 'cache_name: team\ncache: "off"\n')
    assert CACHE_HITS_KEY not in off
    assert off["submitted_requests"] == 1
    assert sorted(path.name for path in (storage / "request_cache").iterdir()) == ["team"]
