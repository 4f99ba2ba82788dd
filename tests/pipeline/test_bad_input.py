"""Bad input fails the run before any API call, naming the line and field; old files stay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from upath import UPath

from batch_assets.core.limits import BatchLimits
from tests.local_api.helpers import chat_request
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import REQUESTS_FILE, STORAGE_FOLDER, build_harness, result_frames
from tests.pipeline.invariants import assert_no_half_written_file

NAME = "checked"
SUBMIT = [f"{NAME}_requests", f"{NAME}_batch"]
MAX_BYTES = 4096
LIMITS = BatchLimits(max_bytes=MAX_BYTES)


def line(request: dict) -> bytes:
    """One request as a JSONL line."""
    return json.dumps(request).encode() + b"\n"


def good(count: int = 2) -> bytes:
    """`count` valid lines, custom_ids r0, r1, ..."""
    return b"".join(line(chat_request(f"r{i}")) for i in range(count))


def with_raw(name: str, value: str) -> bytes:
    """A request line whose body holds `name` written as the JSON text `value`."""
    return line(chat_request("r9")).replace(b'"body": {', f'"body": {{"{name}": {value}, '.encode())


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
    "number beyond a double": (
        good() + with_raw("temperature", "1e400"),
        3,
        "body.temperature",
        "beyond the range of a double",
    ),
    "negative number beyond a double": (
        good() + with_raw("temperature", "-1e400"),
        3,
        "body.temperature",
        "-1e400",
    ),
    "integer beyond a double": (good() + with_raw("seed", "9" * 400), 3, "body.seed", "double"),
    "lone surrogate": (good() + with_raw("stop", '["\\udc00"]'), 3, "body.stop[0]", "surrogate"),
}


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
    source = tmp_path / REQUESTS_FILE
    source.write_bytes(good())
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, limits=LIMITS)
        assert harness.materialize([f"{NAME}_requests"]).success
        [previous] = harness.latest_metadata(f"{NAME}_requests")["shard_files"]
        previous_bytes = UPath(previous).read_bytes()
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
        assert UPath(previous).read_bytes() == previous_bytes
        assert harness.latest_metadata(f"{NAME}_requests")["shard_files"] == [previous]
        assert instance.get_latest_materialization_event(dg.AssetKey(f"{NAME}_batch")) is None
        assert_no_half_written_file(tmp_path / STORAGE_FOLDER)


def _request_with(path: str, value: object) -> dict[str, Any]:
    """A chat request with the value at `path` ("body", "body.seed", "body.messages[0].content")."""
    request = chat_request("r999")
    if path == "body":
        request["body"] = value
    elif path == "body.messages[0].content":
        request["body"]["messages"][0]["content"] = value
    else:
        request["body"][path.removeprefix("body.")] = value
    return request


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ("not an object", "body", "expected an object"),
        (10**400, "body.seed", "beyond the range of a double"),
        (float("inf"), "body.temperature", "not a JSON number"),
        ("\ud800", "body.messages[0].content", "surrogate"),
    ],
    ids=["body not an object", "10**400", "inf", "lone surrogate"],
)
def test_an_iterator_that_yields_a_bad_request_names_it(
    api: LocalBatchAPI, tmp_path: Path, value: object, field: str, words: str
) -> None:
    def requests() -> Iterator[object]:
        for i in range(120):
            yield chat_request(f"r{i}")
        yield _request_with(field, value)
        yield chat_request("r1000")

    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, source=requests, shard_size=50)
        failed = harness.materialize(SUBMIT, raise_on_error=False)

        message, metadata = _failure(failed)
        assert "nothing uploaded" in message
        assert "line 121" in message and words in message
        assert metadata == {"line": 121, "field": field}
        assert api.admin("GET", "stats")["total"] == 0
        assert not [path for path in (tmp_path / STORAGE_FOLDER).rglob("*") if path.is_file()]


def test_a_200_bit_integer_goes_through_and_its_answer_is_downloaded(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    """Within a double, but beyond what polars reads: the download reads those ids itself."""
    source = tmp_path / REQUESTS_FILE
    source.write_bytes(good(3) + with_raw("seed", str(2**200)))
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, limits=LIMITS)
        harness.submit(NAME)
        result = harness.run_until_downloaded(f"{NAME}_output")

        assert result.success
        output, errors = result_frames(result, NAME)
        returned = output["custom_id"].to_list() + errors["custom_id"].to_list()
        assert sorted(returned) == ["r0", "r1", "r2", "r9"]
        assert "not_returned" not in errors["error_code"].to_list()


def test_crlf_mixed_models_and_path_like_custom_ids_go_through(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    custom_ids = ["../../etc/passwd", "a/b\\c", "CON", " spaced ", "日本", "x" * 300]
    requests = [chat_request(custom_id) for custom_id in custom_ids]
    requests[1]["body"]["model"] = requests[4]["body"]["model"] = "gpt-4o"
    source = tmp_path / REQUESTS_FILE
    source.write_bytes(b"".join(line(request).replace(b"\n", b"\r\n") for request in requests))
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, limits=LIMITS)
        harness.submit(NAME)
        shard_files = harness.latest_metadata(f"{NAME}_requests")["shard_files"]
        shards = [UPath(url) for url in shard_files]
        result = harness.run_until_downloaded(f"{NAME}_output")

        assert len(shards) == 2
        assert not any(b"\r" in shard.read_bytes() for shard in shards)
        output, _ = result_frames(result, NAME)
        assert sorted(output["custom_id"].to_list()) == sorted(custom_ids)
        assert dict(output.group_by("model").len().iter_rows()) == {
            "gpt-4o": 2,
            "gpt-4o-mini": 4,
        }
        output_files = harness.latest_metadata(f"{NAME}_output")["output_files"]
        assert all(UPath(url).parent.name == "downloads" for url in output_files)
