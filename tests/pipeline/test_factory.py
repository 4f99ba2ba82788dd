"""What `build_batch_pipeline` returns, and the arguments it refuses."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from batch_assets.core.request_template import RequestTemplate
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.keys import PIPELINE_TAG
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sources import DataFrameSource, IteratorSource, JsonlFileSource

TEMPLATE = RequestTemplate(
    endpoint="/v1/chat/completions", model="gpt-4o-mini", user_template="{text}"
)


def _with_resource(defs: dg.Definitions) -> dg.Definitions:
    return dg.Definitions.merge(
        defs, dg.Definitions(resources={"openai_batch": OpenAIBatchResource()})
    )


def _keys(defs: dg.Definitions) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}


def test_file_source_gives_five_assets_two_checks_and_two_jobs() -> None:
    defs = _with_resource(build_batch_pipeline("docs", JsonlFileSource("in.jsonl"), group_name="g"))
    assert _keys(defs) == {
        "docs_source_file",
        "docs_requests",
        "docs_batch",
        "docs_output",
        "docs_errors",
    }
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {"every_request_answered_once", "error_rate_below_threshold"}
    # Submission runs carry the pipeline's tag, so the run queue's per-pipeline limit holds them.
    assert defs.resolve_job_def("docs_submit_job").tags[PIPELINE_TAG] == "docs"
    assert defs.resolve_job_def("docs_cancel_job") is not None
    assert {defs.resolve_asset_graph().get(dg.AssetKey(key)).group_name for key in _keys(defs)} == {
        "g"
    }


def test_dataframe_source_adds_results_and_a_stopped_schedule() -> None:
    upstream = dg.AssetSpec("rows")
    defs = dg.Definitions.merge(
        _with_resource(
            build_batch_pipeline("t", DataFrameSource("rows", TEMPLATE), schedule="0 1 * * *")
        ),
        dg.Definitions(assets=[upstream]),
    )
    assert "t_results" in _keys(defs)
    schedule = defs.resolve_schedule_def("t_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"name": "Bad-Name"}, "snake_case"),
        ({"endpoint": "/v1/images/generations"}, "endpoint .*is not one the Batch API takes"),
        ({"metadata": {f"k{i}": "v" for i in range(12)}}, "at most 11"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_error_rate": 1.5}, "max_error_rate"),
        ({"completion_window": "48h"}, "completion_window '48h' is not one the Batch API takes"),
    ],
)
def test_bad_arguments_are_refused_naming_them(arguments: dict, message: str) -> None:
    name = arguments.pop("name", "ok")
    with pytest.raises(ValueError, match=message):
        build_batch_pipeline(name, IteratorSource(lambda: iter(())), **arguments)


def test_endpoint_must_match_the_template() -> None:
    with pytest.raises(ValueError, match="differs from the template"):
        build_batch_pipeline("t", DataFrameSource("rows", TEMPLATE), endpoint="/v1/embeddings")


def _storage_root(defs: dg.Definitions, name: str) -> str:
    manager = (defs.resources or {})[f"{name}_records_io_manager"]
    return manager.base_dir


def test_storage_defaults_under_data_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCH_ASSETS_STORAGE_DIR", raising=False)
    defs = build_batch_pipeline("x", JsonlFileSource("a"))
    assert Path(_storage_root(defs, "x")).parts[-4:] == ("data", "generated", "x", "records")


def test_storage_comes_from_the_environment_when_the_factory_is_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCH_ASSETS_STORAGE_DIR", "/tmp/elsewhere")
    defs = build_batch_pipeline("x", JsonlFileSource("a"))
    monkeypatch.setenv("BATCH_ASSETS_STORAGE_DIR", "/tmp/later")
    assert _storage_root(defs, "x") == "/tmp/elsewhere/x/records"
    assert _storage_root(build_batch_pipeline("y", JsonlFileSource("a")), "y") == (
        "/tmp/later/y/records"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nosuch://bucket/prefix", "unknown scheme 'nosuch://'"),
        ("gs://bucket/prefix", "pip install 'batch-assets\\[gcs\\]'"),
    ],
)
def test_an_unusable_storage_url_fails_when_the_definitions_load(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("BATCH_ASSETS_STORAGE_DIR", value)
    with pytest.raises(ValueError, match=f"BATCH_ASSETS_STORAGE_DIR={value}: .*{message}"):
        build_batch_pipeline("x", JsonlFileSource("a"))
    with pytest.raises(ValueError, match=f"storage_dir={value}: .*{message}"):
        build_batch_pipeline("x", JsonlFileSource("a"), storage_dir=value)


def _specs(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    graph = _with_resource(defs).resolve_asset_graph()
    return {
        key.to_user_string(): spec
        for assets_def in graph.assets_defs
        for key, spec in zip(assets_def.keys, assets_def.specs, strict=False)
        if key.to_user_string().startswith("t_")
    }


def _frame_pipeline(template: RequestTemplate = TEMPLATE, **arguments: object) -> dg.Definitions:
    pipeline = build_batch_pipeline(
        "t", DataFrameSource(upstream="rows", template=template), **arguments
    )
    return dg.Definitions.merge(pipeline, dg.Definitions(assets=[dg.AssetSpec("rows")]))


def test_automation_owners_tags_kinds_and_pool_reach_the_assets() -> None:
    eager = dg.AutomationCondition.eager()
    specs = _specs(
        _frame_pipeline(
            automation_condition=eager,
            owners=["team:ml"],
            tags={"domain": "reviews"},
            kinds={"snowflake"},
            pool="batch_api",
        )
    )
    assert set(specs) == {"t_requests", "t_batch", "t_output", "t_errors", "t_results"}
    automated = {key for key, spec in specs.items() if spec.automation_condition is not None}
    assert automated == {"t_requests", "t_batch"}
    for key, spec in specs.items():
        assert list(spec.owners) == ["team:ml"], key
        assert spec.tags["domain"] == "reviews" and spec.tags[PIPELINE_TAG] == "t", key
        assert "snowflake" in spec.kinds, key
    graph = _with_resource(_frame_pipeline(pool="batch_api")).resolve_asset_graph()
    pools = {node.key.to_user_string(): node.pools for node in graph.asset_nodes}
    assert pools["t_batch"] == pools["t_output"] == {"batch_api"}


def test_the_default_pool_is_the_resource_key() -> None:
    graph = _with_resource(_frame_pipeline()).resolve_asset_graph()
    assert graph.get(dg.AssetKey("t_batch")).pools == {"openai_batch"}


def test_the_request_code_version_follows_the_prompt_and_nothing_else() -> None:
    def version(template: RequestTemplate, **arguments: object) -> str | None:
        return _specs(_frame_pipeline(template, **arguments))["t_requests"].code_version

    same = version(TEMPLATE)
    assert same is not None and same == version(TEMPLATE, group_name="other", max_attempts=5)
    changed = RequestTemplate(
        endpoint="/v1/chat/completions", model="gpt-4o-mini", user_template="Label: {text}"
    )
    assert version(changed) != same
    other_model = RequestTemplate(
        endpoint="/v1/chat/completions", model="gpt-4o", user_template="{text}"
    )
    assert version(other_model) != same


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tags": {"batch_assets/role": "x"}}, r"tags \['batch_assets/role'\] are the pipeline's"),
        ({"kinds": {"a", "b"}}, "give at most 1"),
    ],
)
def test_tags_and_kinds_the_assets_cannot_take_are_refused(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _frame_pipeline(**arguments)
