"""Partitioned pipelines: each partition its own submission, downloaded on its own."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from upath import UPath

from batch_assets.core.request_template import RequestTemplate
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import DataFrameSource, IteratorSource, JsonlFileSource
from tests.local_api.helpers import chat_request
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import Harness, make_defs, write_chat_requests

DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_date="2026-11-04")
PARTITIONS = ["2026-11-01", "2026-11-02", "2026-11-03"]
ROWS_PER_DAY = 4
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["label"],
    "additionalProperties": False,
}


@dg.asset(partitions_def=DAYS)
def daily_rows(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """A day's rows: ids that say which day they belong to."""
    day = context.partition_key
    return pl.DataFrame(
        {
            "row_id": [f"{day}-{i}" for i in range(ROWS_PER_DAY)],
            "text": [f"{day} #{i}" for i in range(ROWS_PER_DAY)],
        }
    )


def _daily_pipeline(storage: Path) -> dg.Definitions:
    template = RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        user_template="{text}",
        custom_id_column="row_id",
        response_format=SCHEMA,
    )
    return build_batch_pipeline(
        "daily",
        DataFrameSource(upstream="daily_rows", template=template),
        partitions_def=DAYS,
        storage_dir=storage,
    )


def test_a_three_day_backfill_submits_watches_and_downloads_each_day_on_its_own(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    defs = make_defs(_daily_pipeline(tmp_path / "gen"), api, [daily_rows])
    with dg.instance_for_test() as instance:
        harness = Harness(defs, instance)
        for day in PARTITIONS:
            keys = ["daily_rows", "daily_requests", "daily_batch"]
            assert harness.materialize(keys, partition=day).success
        batches = api.client().batches.list().data
        assert len(batches) == 3  # one submission per day, none shared

        requests: list[dg.RunRequest] = []
        while len(requests) < 3:
            requests += harness.tick_until_run_requested_all()
        assert sorted(request.partition_key or "" for request in requests) == PARTITIONS
        for request in requests:
            result = harness.run_requested(request)
            assert result.success
            results = result.output_for_node("daily_results")
            day = request.partition_key
            assert results["row_id"].to_list() == [f"{day}-{i}" for i in range(ROWS_PER_DAY)]
            assert results["answer_matches_schema"].all()
            checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
            assert checks == {
                "every_request_answered_once": True,
                "error_rate_below_threshold": True,
                "answers_match_schema": True,
            }
        tables = tmp_path / "gen" / "daily" / "tables"
        assert sorted(path.name for path in (tables / "daily_output").iterdir()) == [
            f"{day}.parquet" for day in PARTITIONS
        ]
        materialized = instance.get_materialized_partitions(dg.AssetKey("daily_output"))
        assert materialized == set(PARTITIONS)
        assert not harness.tick().run_requests


def test_a_jsonl_path_and_an_iterator_take_the_partition_key(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    letters = _files_per_letter(tmp_path, 3)

    def requests(partition_key: str) -> Iterator[dict]:
        for i in range(2):
            yield chat_request(f"it-{partition_key}{i}", f"Question {i} of {partition_key}?")

    defs = make_defs(
        dg.Definitions.merge(
            build_batch_pipeline(
                "files",
                JsonlFileSource(tmp_path / "requests-{partition_key}.jsonl"),
                partitions_def=letters,
                storage_dir=tmp_path / "gen",
            ),
            build_batch_pipeline(
                "generated",
                IteratorSource(requests),
                partitions_def=letters,
                storage_dir=tmp_path / "gen",
            ),
        ),
        api,
    )
    with dg.instance_for_test() as instance:
        harness = Harness(defs, instance)
        harness.materialize(["files_requests"], partition="b")
        harness.materialize(["generated_requests"], partition="a")
        [files_shard] = harness.latest_metadata("files_requests")["shard_files"]
        [generated_shard] = harness.latest_metadata("generated_requests")["shard_files"]
    assert _custom_ids(files_shard) == ["b0", "b1", "b2"]
    assert _custom_ids(generated_shard) == ["it-a0", "it-a1"]


def _files_per_letter(folder: Path, count: int) -> dg.StaticPartitionsDefinition:
    """Partitions `a` and `b`, and a file of `count` chat requests for each."""
    for letter in ("a", "b"):
        ids = [f"{letter}{i}" for i in range(count)]
        write_chat_requests(folder / f"requests-{letter}.jsonl", ids)
    return dg.StaticPartitionsDefinition(["a", "b"])


def _custom_ids(shard_url: str) -> list[str]:
    lines = UPath(shard_url).read_text().splitlines()
    return [json.loads(line)["custom_id"] for line in lines]


@pytest.mark.parametrize("source", ["file", "iterator"])
def test_a_partition_placeholder_without_partitions_is_refused(source: str, tmp_path: Path) -> None:
    if source == "file":
        chosen = JsonlFileSource(tmp_path / "requests-{partition_key}.jsonl")
        message = "holds {partition_key}"
    else:
        chosen = IteratorSource(lambda partition_key: iter(()))
        message = "takes a partition key"
    with pytest.raises(ValueError, match=message):
        build_batch_pipeline("p", chosen)


def test_the_cancel_job_cancels_its_partition_only(api: LocalBatchAPI, tmp_path: Path) -> None:
    letters = _files_per_letter(tmp_path, 4)
    defs = make_defs(
        build_batch_pipeline(
            "held",
            JsonlFileSource(tmp_path / "requests-{partition_key}.jsonl"),
            partitions_def=letters,
            storage_dir=tmp_path / "gen",
        ),
        api,
    )
    api.configure(answer_at_most=1)
    with dg.instance_for_test() as instance:
        harness = Harness(defs, instance)
        for letter in ("a", "b"):
            assert harness.materialize(["held_requests", "held_batch"], partition=letter).success
        client = api.client()
        wait_for(lambda: all(b.request_counts.completed == 1 for b in client.batches.list()))
        cancel = defs.resolve_job_def("held_cancel_job")
        assert cancel.execute_in_process(instance=instance, partition_key="a").success
        statuses = {
            (batch.metadata or {}).get("batch_assets_shard_key"): batch.status
            for batch in client.batches.list()
        }
        assert sorted(statuses.values()) == ["cancelled", "in_progress"]

        api.configure(answer_at_most=None)
        requests = harness.tick_until_run_requested_all()
        while len(requests) < 2:
            requests += harness.tick_until_run_requested_all()
        for request in requests:
            assert harness.run_requested(request).success
        assert sorted(request.partition_key or "" for request in requests) == ["a", "b"]
        a_errors = pl.read_parquet(
            tmp_path / "gen" / "held" / "tables" / "held_errors" / "a.parquet"
        )
        b_output = pl.read_parquet(
            tmp_path / "gen" / "held" / "tables" / "held_output" / "b.parquet"
        )
        # Cancelled on request: a's unfinished requests are errors, not retried; b finished.
        assert a_errors["error_code"].to_list() == ["batch_cancelled"] * 3
        assert sorted(b_output["custom_id"].to_list()) == ["b0", "b1", "b2", "b3"]
