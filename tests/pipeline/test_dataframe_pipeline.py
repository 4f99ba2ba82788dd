"""The DataFrame pipeline from upstream rows to joined results, on a real Dagster instance."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.core.request_template import RequestTemplate
from batch_assets.pipeline.sources import DataFrameSource
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import (
    FROZEN_SECONDS_PER_REQUEST,
    STORAGE_FOLDER,
    build_harness,
    calls,
)

SCHEMA = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
    "required": ["sentiment"],
    "additionalProperties": False,
}
ROWS = 25


@dg.asset
def tiny_reviews() -> pl.DataFrame:
    """Upstream rows with an integer id, quotes and unicode in the text."""
    return pl.DataFrame(
        {
            "review_id": list(range(1000, 1000 + ROWS)),
            "text": [f'Review {i}: "great" \u00e9t\u00e9 \u2603 #{i}' for i in range(ROWS)],
        }
    )


_template = partial(
    RequestTemplate,
    endpoint="/v1/chat/completions",
    model="gpt-4o-mini",
    user_template="{text}",
    custom_id_column="review_id",
)
"""A chat template over the reviews' text, keyed by review_id; keywords change it."""
REVIEWS = DataFrameSource(
    upstream="tiny_reviews",
    template=_template(system_prompt="Label the review.", response_format=SCHEMA),
)
NAME = "tiny"


ALL_KEYS = [
    "tiny_reviews",
    "tiny_requests",
    "tiny_batch",
    "tiny_output",
    "tiny_errors",
    "tiny_results",
]


def test_materialize_all_then_sensor_finishes_the_job(api: LocalBatchAPI, tmp_path: Path) -> None:
    # The batch answers nothing until the first run is over, however long that run takes.
    api.configure(seconds_per_request=FROZEN_SECONDS_PER_REQUEST)
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, source=REVIEWS, extra_assets=[tiny_reviews]
        )

        first = harness.materialize(ALL_KEYS)

        assert first.success
        materialized = {
            event.asset_key.to_user_string() for event in first.get_asset_materialization_events()
        }
        assert materialized == {"tiny_reviews", "tiny_requests", "tiny_batch"}
        logs = [
            event.message
            for event in instance.all_logs(first.run_id)
            if event.message and "batch_completion_sensor will materialize" in event.message
        ]
        assert logs, "the skipped download should say the sensor will materialize it"
        api.configure(seconds_per_request=0.0)

        request = harness.tick_until_run_requested()
        assert set(request.asset_selection) == {
            dg.AssetKey("tiny_output"),
            dg.AssetKey("tiny_errors"),
            dg.AssetKey("tiny_results"),
        }
        second = harness.run_requested(request)

        assert second.success
        results = second.output_for_node("tiny_results")
        assert results.height == ROWS
        assert results["review_id"].to_list() == list(range(1000, 1000 + ROWS))
        answers = [json.loads(answer) for answer in results["answer"].to_list()]
        assert {answer["sentiment"] for answer in answers} <= {"positive", "negative"}
        tables = tmp_path / STORAGE_FOLDER / "tiny" / "tables"
        results_path = harness.latest_metadata("tiny_results")["path"]
        assert results_path == (tables / "tiny_results.parquet").as_uri()
        assert pl.read_parquet(tables / "tiny_results.parquet").equals(results)
        assert pl.read_parquet(tables / "tiny_errors.parquet").height == 0
        pickles = Path(instance.storage_directory())
        assert not (pickles / "tiny_results").exists() and not (pickles / "tiny_errors").exists()
        output, _ = harness.latest_frames("tiny")
        assert sorted(output["custom_id"].to_list()) == [str(i) for i in range(1000, 1000 + ROWS)]
        assert output["custom_id"].n_unique() == ROWS
        checks = {
            evaluation.check_name: evaluation.passed
            for evaluation in second.get_asset_check_evaluations()
        }
        assert checks == {
            "every_request_answered_once": True,
            "error_rate_below_threshold": True,
            "answers_match_schema": True,
        }
        output_metadata = harness.latest_metadata("tiny_output")
        assert output_metadata["openai.prompt_tokens"] == output["input_tokens"].sum() > 0
        assert output_metadata["openai.completion_tokens"] == output["output_tokens"].sum() > 0
        assert output_metadata["usage_source"] == "batch usage"
        assert output_metadata["estimated_cost_usd"] > 0
        assert output_metadata["backend"] == api.root_url.removeprefix("http://")
        assert output_metadata["openai.calls"] == ROWS
        assert output_metadata["openai.total_tokens"] == (
            output["input_tokens"].sum() + output["output_tokens"].sum()
        )
        assert output_metadata["dagster/row_count"] == ROWS
        schema = output_metadata["dagster/column_schema"]
        assert [(c.name, c.type) for c in schema.columns] == [
            (name, str(dtype)) for name, dtype in output.schema.items()
        ]
        preview = output_metadata["preview"]
        assert [column.name for column in preview.schema.columns] == [
            "custom_id",
            "answer",
            "finish_reason",
            "cached",
        ]
        assert [record.data["custom_id"] for record in preview.records] == (
            output["custom_id"].head(5).to_list()
        )


def test_sharding_splits_into_batches_and_joins_back(api: LocalBatchAPI, tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api,
            tmp_path,
            instance,
            name=NAME,
            source=REVIEWS,
            extra_assets=[tiny_reviews],
            shard_size=10,
        )
        harness.materialize(["tiny_reviews", "tiny_requests", "tiny_batch"])

        assert harness.latest_metadata("tiny_requests")["shard_count"] == 3
        assert len(harness.latest_metadata("tiny_batch")["batch_ids"]) == 3
        result = harness.download()

        assert result.success
        joined = result.output_for_node("tiny_results")
        assert joined.height == ROWS
        assert joined["answer"].null_count() == 0
        assert joined["batch_id"].n_unique() == 3


def test_progress_is_observed_with_numeric_counts(api: LocalBatchAPI, tmp_path: Path) -> None:
    # One tick sees the batch in progress with nothing answered; the batch is let go after it.
    api.configure(seconds_per_request=FROZEN_SECONDS_PER_REQUEST)
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, source=REVIEWS, extra_assets=[tiny_reviews]
        )
        harness.materialize(["tiny_reviews", "tiny_requests", "tiny_batch"])
        harness.wait_for_batches(api, NAME, "in_progress")
        assert harness.tick().asset_events
        api.configure(seconds_per_request=0.0)
        harness.tick_until_run_requested()

        observations = instance.fetch_observations(dg.AssetKey("tiny_batch"), limit=100).records
        counts = [record.asset_observation.metadata["completed"].value for record in observations]
        assert len(counts) >= 2
        assert all(isinstance(count, int) for count in counts)
        assert min(counts) == 0
        assert max(counts) == ROWS
        assert all(
            record.asset_observation.metadata["total"].value in (0, ROWS) for record in observations
        )


@pytest.mark.parametrize("column", ["missing_column"])
def test_a_template_column_that_does_not_exist_fails_before_upload(
    api: LocalBatchAPI, tmp_path: Path, column: str
) -> None:
    source = DataFrameSource(
        upstream="tiny_reviews", template=_template(user_template="{" + column + "}")
    )
    api.admin("DELETE", "stats")
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name="broken", source=source, extra_assets=[tiny_reviews]
        )
        result = harness.materialize(
            ["tiny_reviews", "broken_requests", "broken_batch"], raise_on_error=False
        )

        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert column in str(failure.step_failure_data.error)
        assert calls(api, "POST /v1/files") == 0


EMBEDDING_ROWS = pl.DataFrame({"review_id": [1, 2, 3], "text": ["red tent", "blue tent", "stove"]})


@pytest.mark.parametrize(
    ("endpoint", "response_format"),
    [("/v1/responses", SCHEMA), ("/v1/embeddings", None), ("/v1/chat/completions", None)],
)
def test_each_template_endpoint_gives_typed_answers(
    api: LocalBatchAPI, tmp_path: Path, endpoint: str, response_format: dict | None
) -> None:
    @dg.asset(name="rows")
    def rows() -> pl.DataFrame:
        return EMBEDDING_ROWS

    template = _template(
        endpoint=endpoint,
        model="text-embedding-3-small" if endpoint == "/v1/embeddings" else "gpt-4o-mini",
        response_format=response_format,
        params={"dimensions": 16} if endpoint == "/v1/embeddings" else {},
    )
    source = DataFrameSource(upstream="rows", template=template)
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name="typed", source=source, extra_assets=[rows]
        )
        harness.materialize(["rows", "typed_requests", "typed_batch"])
        joined = harness.download().output_for_node("typed_results")
        metadata = harness.latest_metadata("typed_results")

    assert (metadata["dagster/row_count"], metadata["answered_rows"], metadata["error_rows"]) == (
        3,
        3,
        0,
    )

    assert joined["review_id"].to_list() == [1, 2, 3]
    assert joined["status_code"].to_list() == [200, 200, 200]
    if endpoint == "/v1/embeddings":
        assert joined.schema["embedding"] == pl.List(pl.Float64)
        assert [len(vector) for vector in joined["embedding"].to_list()] == [16, 16, 16]
    elif response_format is not None:
        assert joined.schema["sentiment"] == pl.Enum(["positive", "negative"])
        assert joined["answer_matches_schema"].to_list() == [True, True, True]
        labels = joined["sentiment"].cast(pl.String).to_list()
        assert set(labels) <= {"positive", "negative"} and None not in labels
    else:
        assert joined["answer"].null_count() == 0
        assert "sentiment" not in joined.columns and "answer_matches_schema" not in joined.columns


def test_results_carry_errors_for_failed_rows(api: LocalBatchAPI, tmp_path: Path) -> None:
    api.configure(fail_rate=0.5)
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, source=REVIEWS, extra_assets=[tiny_reviews]
        )
        harness.materialize(["tiny_reviews", "tiny_requests", "tiny_batch"])
        joined = harness.run_until_downloaded("tiny_output").output_for_node("tiny_results")

        metadata = harness.latest_metadata("tiny_results")

    assert joined.height == ROWS
    failed = joined.filter(pl.col("status_code") == 500)
    assert metadata["answered_rows"] == ROWS - failed.height
    assert metadata["error_rows"] == failed.height
    assert failed["attempts"].to_list() == [3] * failed.height
    assert 0 < failed.height < ROWS
    assert failed["answer"].null_count() == failed.height
    assert failed["error_type"].to_list() == ["server_error"] * failed.height
    succeeded = joined.filter(pl.col("status_code") == 200)
    assert succeeded["answer_matches_schema"].all()
    assert succeeded["sentiment"].null_count() == 0
    assert joined.filter(pl.col("status_code") == 500)["answer_matches_schema"].null_count() == (
        failed.height
    )


def _reviews_with(columns: dict[str, list]) -> dg.AssetsDefinition:
    @dg.asset(name="tiny_reviews")
    def reviews() -> pl.DataFrame:
        return tiny_reviews().with_columns(**{name: pl.Series(v) for name, v in columns.items()})

    return reviews


def test_input_columns_named_like_result_columns_fail_before_upload(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    reviews = _reviews_with({"answer": ["mine"] * ROWS, "model": ["X1"] * ROWS})
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, source=REVIEWS, extra_assets=[reviews]
        )
        result = harness.materialize(ALL_KEYS[:3], raise_on_error=False)

        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
        assert "nothing uploaded" in failure.error.message
        assert "'answer', 'model'" in failure.error.message
        columns = failure.user_failure_data.metadata["columns"].value
        assert columns == ["answer", "model"]
        assert api.admin("GET", "stats")["total"] == 0
        assert instance.get_latest_materialization_event(dg.AssetKey("tiny_batch")) is None


def test_an_answer_column_added_upstream_after_submission_keeps_the_answers(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    """The results join refuses the clash too, and the batch's answers stay in the output."""
    later = _reviews_with({"answer": ["mine"] * ROWS})
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, source=REVIEWS, extra_assets=[tiny_reviews]
        )
        harness.materialize(ALL_KEYS[:3])
        harness.defs = build_harness(
            api, tmp_path, instance, name=NAME, source=REVIEWS, extra_assets=[later]
        ).defs
        harness.materialize(["tiny_reviews"])

        result = harness.download()

        failure = next(e for e in result.all_events if e.is_step_failure)
        assert failure.step_key == "tiny_results"
        assert "Cannot join the results" in failure.step_failure_data.error.message
        assert "'answer'" in failure.step_failure_data.error.message
        output, _ = harness.latest_frames("tiny")
        assert output.height == ROWS and output["answer"].null_count() == 0
        assert instance.get_latest_materialization_event(dg.AssetKey("tiny_results")) is None


def test_template_params_beyond_a_double_fail_before_upload(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    """Params are checked when the template is made, and again when the rows are rendered."""
    params: dict = {"temperature": 0.2}
    template = _template(params=params)
    params["seed"] = 10**400
    source = DataFrameSource(upstream="tiny_reviews", template=template)
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, source=source, extra_assets=[tiny_reviews]
        )
        result = harness.materialize(ALL_KEYS[:3], raise_on_error=False)

        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.step_failure_data.error.message
        assert "nothing uploaded" in message and "field 'body.seed'" in message
        assert api.admin("GET", "stats")["total"] == 0
        assert not list((tmp_path / STORAGE_FOLDER).rglob("*.jsonl"))


def test_answers_cut_short_keep_their_text_and_fail_the_schema_check(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    long_schema = {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "topics": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["summary", "topics"],
        "additionalProperties": False,
    }
    source = DataFrameSource(
        upstream="tiny_reviews",
        template=_template(response_format=long_schema, params={"max_tokens": 3}),
    )
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, source=source, extra_assets=[tiny_reviews]
        )
        harness.materialize(["tiny_reviews", "tiny_requests", "tiny_batch"])
        result = harness.download()
        joined = result.output_for_node("tiny_results")

    assert (joined["finish_reason"] == "length").all()
    assert not joined["answer_matches_schema"].any()
    assert joined["summary"].null_count() == ROWS and joined["answer"].null_count() == 0
    [check] = [
        evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == "answers_match_schema"
    ]
    assert not check.passed
    assert check.metadata["mismatched"].value == ROWS
