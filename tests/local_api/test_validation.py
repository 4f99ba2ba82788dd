"""Each validation failure, with its code, param and 1-based line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import OpenAI

from tests.local_api.helpers import chat_request, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI


def _embedding_request(custom_id: str, inputs: list[str]) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small", "input": inputs},
    }


def _with(id_: str, **changes: Any) -> dict[str, Any]:
    request = chat_request(id_)
    for key, value in changes.items():
        if value is ...:
            del request[key]
        else:
            request[key] = value
    return request


def _other_model(custom_id: str) -> dict[str, Any]:
    return chat_request(custom_id, model="gpt-4o")


def _no_model(custom_id: str) -> dict[str, Any]:
    request = chat_request(custom_id)
    del request["body"]["model"]
    return request


CASES = [
    ("invalid_json", ['{"custom_id": "b", "method": '], "invalid_json_line", None),
    ("blank_line", [""], "invalid_json_line", None),
    ("not_an_object", ["[1, 2]"], "invalid_request", None),
    ("missing_custom_id", [_with("b", custom_id=...)], "missing_required_parameter", "custom_id"),
    ("custom_id_not_str", [_with("b", custom_id=7)], "invalid_type", "custom_id"),
    ("missing_method", [_with("b", method=...)], "missing_required_parameter", "method"),
    ("method_not_post", [_with("b", method="GET")], "invalid_value", "method"),
    ("missing_url", [_with("b", url=...)], "missing_required_parameter", "url"),
    ("url_not_str", [_with("b", url=None)], "invalid_type", "url"),
    ("url_mismatch", [_with("b", url="/v1/embeddings")], "url_mismatch", "url"),
    ("missing_body", [_with("b", body=...)], "missing_required_parameter", "body"),
    ("body_not_object", [_with("b", body="hi")], "invalid_type", "body"),
    ("missing_model", [_no_model("b")], "missing_required_parameter", "body.model"),
    ("duplicate_custom_id", [chat_request("a")], "duplicate_custom_id", "custom_id"),
    ("model_mismatch", [_other_model("b")], "model_mismatch", "body.model"),
]


@pytest.mark.parametrize(
    ("second_line", "code", "param"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_second_line_fails_validation_naming_line_two(
    client: OpenAI, second_line: list[Any], code: str, param: str | None
) -> None:
    lines = [chat_request("a"), *second_line, chat_request("c")]
    done = wait_until_done(client, submit(client, lines).id)

    assert done.status == "failed"
    assert done.output_file_id is None and done.error_file_id is None
    assert done.request_counts.total == 0
    [error] = done.errors.data
    assert (error.code, error.line, error.param) == (code, 2, param)
    assert error.message


def test_every_bad_line_is_reported_with_its_number(client: OpenAI) -> None:
    lines = [chat_request("a"), "nope", chat_request("b"), _with("c", url="/v1/completions")]
    done = wait_until_done(client, submit(client, lines).id)
    assert [(e.code, e.line) for e in done.errors.data] == [
        ("invalid_json_line", 2),
        ("url_mismatch", 4),
    ]


def test_invalid_json_line_message(client: OpenAI) -> None:
    done = wait_until_done(client, submit(client, [chat_request("a"), "{"]).id)
    [error] = done.errors.data
    assert error.message == "This line is not parseable as valid JSON."


def test_crlf_line_ends_are_accepted(client: OpenAI) -> None:
    data = b"".join(json.dumps(chat_request(i)).encode() + b"\r\n" for i in ("a", "b"))
    input_file = client.files.create(file=("crlf.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert wait_until_done(client, batch.id).status == "completed"


def test_empty_file(client: OpenAI) -> None:
    input_file = client.files.create(file=("empty.jsonl", b""), purpose="batch")
    batch = client.batches.create(
        input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_until_done(client, batch.id)
    assert [(e.code, e.line) for e in done.errors.data] == [("empty_file", None)]


def test_more_than_50000_requests(client: OpenAI) -> None:
    done = wait_until_done(
        client, submit(client, [chat_request(f"r{i}") for i in range(50_001)]).id
    )
    assert done.status == "failed"
    assert [(e.code, e.line) for e in done.errors.data] == [("too_many_tasks", None)]
    assert "50,001" in done.errors.data[0].message


def test_exactly_50000_requests_pass(client: OpenAI) -> None:
    done = wait_until_done(
        client, submit(client, [chat_request(f"r{i}") for i in range(50_000)]).id
    )
    assert done.status == "completed"
    assert done.request_counts.completed == 50_000


def test_more_than_50000_embedding_inputs_in_total(client: OpenAI) -> None:
    lines = [_embedding_request(f"e{i}", ["x"] * 10_001) for i in range(5)]
    done = wait_until_done(client, submit(client, lines, endpoint="/v1/embeddings").id)
    assert done.status == "failed"
    [error] = done.errors.data
    assert (error.code, error.line) == ("too_many_tasks", None)
    assert "embedding inputs" in error.message


def test_enqueued_token_limit(local_api: LocalBatchAPI, client: OpenAI) -> None:
    local_api.configure(enqueued_token_limit=3_000, seconds_per_request=0.05)
    short_text, long_text = "word " * 100, "word " * 500
    first = submit(client, [chat_request(f"a{i}", text=short_text) for i in range(20)])
    second = submit(client, [chat_request("c", text=long_text)])
    other_model = submit(client, [chat_request("d", text=long_text, model="gpt-4o")])

    rejected = wait_until_done(client, second.id)
    assert rejected.status == "failed"
    [error] = rejected.errors.data
    assert (error.code, error.line) == ("token_limit_exceeded", None)
    assert "Enqueued token limit reached for gpt-4o-mini" in error.message
    assert "Limit: 3,000 enqueued tokens" in error.message
    assert wait_until_done(client, first.id).status == "completed"
    assert wait_until_done(client, other_model.id).status == "completed"
    again = submit(client, [chat_request("c", text=long_text)])
    assert wait_until_done(client, again.id).status == "completed"
