"""`BatchPipelineComponent` loaded from YAML: the support_tickets example, each source kind, and
the completion sensors `batch_assets.definitions` adds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from batch_assets import BatchPipelineComponent
from batch_assets.components.batch_pipeline import with_completion_sensors
from batch_assets.core.limits import BatchLimits
from batch_assets.core.request_template import RequestTemplate
from batch_assets.definitions import defs as project_defs
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.keys import PIPELINE_TAG, RESOURCE_TAG
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
    assert not defs.sensors  # the code location adds the shared sensor


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
