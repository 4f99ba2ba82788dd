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
