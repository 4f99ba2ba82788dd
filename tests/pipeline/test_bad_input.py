"""Bad input fails the run before any API call, naming the line and field; old files stay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.core.limits import BatchLimits
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import IteratorSource, JsonlFileSource
from tests.local_api.helpers import chat_request
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import Harness, make_defs
from tests.pipeline.invariants import assert_no_half_written_file

NAME = "checked"
SUBMIT = [f"{NAME}_requests", f"{NAME}_batch"]
MAX_BYTES = 4096


def line(request: dict) -> bytes:
    """One request as a JSONL line."""
    return json.dumps(request).encode() + b"\n"


def good(count: int = 2) -> bytes:
    """`count` valid lines, custom_ids r0, r1, ..."""
    return b"".join(line(chat_request(f"r{i}")) for i in range(count))


def without(key: str) -> dict:
    """A request missing `key`."""
    request = chat_request("r9")
    del request[key]
    return request


# name: (file content, line named, field named, words in the message)
BAD_FILES: dict[str, tuple[bytes, int | None, str | None, str]] = {
    "bad JSON": (good() + b'{"custom_id": "r9", "method": "POST"\n', 3, None, "JSON"),
    "wrong type": (good() + line({**chat_request("r9"), "custom_id": 9}), 3, "custom_id", "9"),
    "missing field": (good() + line(without("method")), 3, "method", "missing"),
    "non-UTF-8 bytes": (good() + b'{"custom_id": "caf\xe9"}\n', 3, None, "UTF-8"),
    "byte order mark": (b"\xef\xbb\xbf" + good(), 1, None, "BOM"),
    "blank line": (good(1) + b"\n" + line(chat_request("r9")), 2, None, "blank"),
    "huge line": (good() + line(chat_request("r9", "x" * MAX_BYTES)), 3, None, "max_bytes"),
    "duplicate custom_id": (good(3) + line(chat_request("r1")), 4, "custom_id", "first on line 2"),
    "url not the endpoint": (
        good() + line({**chat_request("r9"), "url": "/v1/embeddings"}),
        3,
        "url",
        "/v1/chat/completions",
    ),
    "empty input": (b"", None, None, "empty"),
}


def _harness(api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance) -> Harness:
    pipeline = build_batch_pipeline(
        NAME,
        JsonlFileSource(tmp_path / "requests.jsonl"),
        storage_dir=tmp_path / "gen",
        limits=BatchLimits(max_bytes=MAX_BYTES),
    )
    return Harness(make_defs(pipeline, api), instance)


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str, dict]:
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert failure.user_failure_data is not None, failure.error
    metadata = {key: value.value for key, value in failure.user_failure_data.metadata.items()}
    return failure.error.message, metadata


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_fails_before_upload_and_keeps_previous_files(
    api: LocalBatchAPI, tmp_path: Path, case: str
) -> None:
    content, line_number, field, words = BAD_FILES[case]
    source = tmp_path / "requests.jsonl"
    source.write_bytes(good())
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        assert harness.materialize([f"{NAME}_requests"]).success
        [previous] = harness.latest_metadata(f"{NAME}_requests")["shard_files"]
        previous_bytes = Path(previous).read_bytes()
        source.write_bytes(content)

        failed = harness.materialize(SUBMIT, raise_on_error=False)

        assert not failed.success
        message, metadata = _failure(failed)
        assert "nothing uploaded" in message
        assert words in message
        if line_number is not None:
            assert f"line {line_number}" in message
            assert metadata["line"] == line_number
        if field is not None:
            assert f"field {field!r}" in message
            assert metadata["field"] == field
        assert api.admin("GET", "stats")["total"] == 0
        assert Path(previous).read_bytes() == previous_bytes
        assert harness.latest_metadata(f"{NAME}_requests")["shard_files"] == [previous]
        assert instance.get_latest_materialization_event(dg.AssetKey(f"{NAME}_batch")) is None
        assert_no_half_written_file(tmp_path / "gen")


def test_an_iterator_that_yields_a_bad_request_names_it(api: LocalBatchAPI, tmp_path: Path) -> None:
    def requests() -> Iterator[object]:
        for i in range(120):
            yield chat_request(f"r{i}")
        yield {**chat_request("r999"), "body": "not an object"}

    pipeline = build_batch_pipeline(
        NAME,
        IteratorSource(requests),
        storage_dir=tmp_path / "gen",
        limits=BatchLimits(max_requests=50),
    )
    with dg.instance_for_test() as instance:
        harness = Harness(make_defs(pipeline, api), instance)
        failed = harness.materialize(SUBMIT, raise_on_error=False)

        message, metadata = _failure(failed)
        assert "line 121" in message
        assert metadata["field"] == "body"
        assert api.admin("GET", "stats")["total"] == 0
        assert not [path for path in (tmp_path / "gen").rglob("*") if path.is_file()]


def test_crlf_mixed_models_and_path_like_custom_ids_go_through(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    custom_ids = ["../../etc/passwd", "a/b\\c", "CON", " spaced ", "日本", "x" * 300]
    requests = [chat_request(custom_id) for custom_id in custom_ids]
    requests[1]["body"]["model"] = requests[4]["body"]["model"] = "gpt-4o"
    source = tmp_path / "requests.jsonl"
    source.write_bytes(b"".join(line(request).replace(b"\n", b"\r\n") for request in requests))
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        harness.materialize(SUBMIT)
        shards = [Path(path) for path in harness.latest_metadata(f"{NAME}_requests")["shard_files"]]
        result = harness.run_until_downloaded(f"{NAME}_output")

        assert len(shards) == 2
        assert not any(b"\r" in shard.read_bytes() for shard in shards)
        batch_result = result.output_for_node(f"{NAME}_download", f"{NAME}_output")
        output = pl.read_parquet(batch_result.output_table)
        assert sorted(output["custom_id"].to_list()) == sorted(custom_ids)
        assert dict(output.group_by("model").len().iter_rows()) == {
            "gpt-4o": 2,
            "gpt-4o-mini": 4,
        }
        assert all(path.parent.name == "downloads" for path in batch_result.output_files)
