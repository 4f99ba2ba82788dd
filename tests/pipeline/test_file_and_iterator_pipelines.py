"""The JSONL-file and iterator ways in, and sharding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from upath import UPath

from tests.local_api.helpers import chat_request
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import build_harness, calls, result_frames


def test_jsonl_file_end_to_end_with_raw_files_kept(api: LocalBatchAPI, tmp_path: Path) -> None:
    custom_ids = [f"t{i}" for i in range(30)]
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name="tickets", custom_ids=custom_ids)
        assert harness.submit("tickets").success
        result = harness.download()

        assert result.success
        metadata = harness.latest_metadata("tickets_output")
        [raw_output] = metadata["output_files"]
        assert sorted(
            json.loads(line)["custom_id"] for line in UPath(raw_output).read_text().splitlines()
        ) == sorted(custom_ids)
        assert metadata["error_files"] == []
        output, errors = result_frames(result, "tickets")
        assert output.height == 30
        assert output["status_code"].unique().to_list() == [200]
        assert output["answer"].null_count() == 0
        assert errors.height == 0


def test_iterator_streams_into_shards_by_limit(api: LocalBatchAPI, tmp_path: Path) -> None:
    def requests() -> Iterator[dict]:
        for i in range(1200):
            yield chat_request(f"q{i:04d}", f"question {i}")

    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name="questions", source=requests, shard_size=500
        )
        assert harness.submit("questions").success
        assert harness.latest_metadata("questions_requests")["shard_count"] == 3
        assert harness.latest_metadata("questions_requests")["dagster/row_count"] == 1200
        preview = harness.latest_metadata("questions_requests")["preview"].records
        assert [(row.data["custom_id"], row.data["prompt"]) for row in preview] == [
            (f"q{i:04d}", f"question {i}") for i in range(5)
        ]
        result = harness.download()

        output, _ = result_frames(result, "questions")
        assert sorted(output["custom_id"].to_list()) == [f"q{i:04d}" for i in range(1200)]
        assert output["batch_id"].n_unique() == 3


def test_resubmitting_the_same_requests_reuses_the_batch(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name="same", custom_ids=["a", "b"])
        harness.submit("same")
        first = harness.latest_metadata("same_batch")["batch_ids"]
        harness.submit("same")

        assert harness.latest_metadata("same_batch")["batch_ids"] == first
        assert harness.latest_metadata("same_batch")["reused_batches"] == 1
        assert calls(api, "POST /v1/batches") == 1
