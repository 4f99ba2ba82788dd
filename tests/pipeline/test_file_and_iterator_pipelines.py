"""The JSONL-file and iterator ways in, and sharding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
from upath import UPath

from batch_assets.core.limits import BatchLimits
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import IteratorSource, JsonlFileSource
from tests.local_api.helpers import chat_request, jsonl
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import Harness, make_defs


def _write_jsonl(path: Path, requests: list) -> Path:
    path.write_bytes(jsonl(requests))
    return path


def test_jsonl_file_end_to_end_with_raw_files_kept(api: LocalBatchAPI, tmp_path: Path) -> None:
    source = _write_jsonl(
        tmp_path / "tickets.jsonl", [chat_request(f"t{i}", f"ticket {i}") for i in range(30)]
    )
    pipeline = build_batch_pipeline(
        "tickets", JsonlFileSource(source), storage_dir=tmp_path / "generated"
    )
    with dg.instance_for_test() as instance:
        harness = Harness(make_defs(pipeline, api), instance)
        assert harness.materialize(["tickets_requests", "tickets_batch"]).success
        result = harness.run_requested(harness.tick_until_run_requested())

        assert result.success
        batch_result = result.output_for_node("tickets_download", "tickets_output")
        [raw_output] = batch_result.output_files
        assert sorted(
            json.loads(line)["custom_id"] for line in UPath(raw_output).read_text().splitlines()
        ) == sorted(f"t{i}" for i in range(30))
        assert batch_result.error_files == ()
        output = pl.read_parquet(batch_result.output_table)
        assert output.height == 30
        assert output["status_code"].unique().to_list() == [200]
        assert output["answer"].null_count() == 0
        assert result.output_for_node("tickets_download", "tickets_errors").height == 0


def test_iterator_streams_into_shards_by_limit(api: LocalBatchAPI, tmp_path: Path) -> None:
    def requests() -> Iterator[dict]:
        for i in range(1200):
            yield chat_request(f"q{i:04d}", f"question {i}")

    pipeline = build_batch_pipeline(
        "questions",
        IteratorSource(requests),
        limits=BatchLimits(max_requests=500),
        storage_dir=tmp_path / "generated",
    )
    with dg.instance_for_test() as instance:
        harness = Harness(make_defs(pipeline, api), instance)
        assert harness.materialize(["questions_requests", "questions_batch"]).success
        assert harness.latest_metadata("questions_requests")["shard_count"] == 3
        assert harness.latest_metadata("questions_requests")["request_count"] == 1200
        result = harness.run_requested(harness.tick_until_run_requested())

        output = pl.read_parquet(
            result.output_for_node("questions_download", "questions_output").output_table
        )
        assert sorted(output["custom_id"].to_list()) == [f"q{i:04d}" for i in range(1200)]
        assert output["batch_id"].n_unique() == 3


def test_resubmitting_the_same_requests_reuses_the_batch(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    source = _write_jsonl(tmp_path / "same.jsonl", [chat_request("a", "x"), chat_request("b", "y")])
    pipeline = build_batch_pipeline("same", JsonlFileSource(source), storage_dir=tmp_path / "gen")
    with dg.instance_for_test() as instance:
        harness = Harness(make_defs(pipeline, api), instance)
        harness.materialize(["same_requests", "same_batch"])
        first = harness.latest_metadata("same_batch")["batch_ids"]
        harness.materialize(["same_requests", "same_batch"])

        assert harness.latest_metadata("same_batch")["batch_ids"] == first
        assert harness.latest_metadata("same_batch")["reused_batches"] == 1
        assert api.admin("GET", "stats")["calls"]["POST /v1/batches"] == 1
