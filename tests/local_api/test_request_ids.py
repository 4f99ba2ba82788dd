"""Every answer carries `x-request-id: req_<32 hex>`, as OpenAI's do, and the SDK reads it."""

from __future__ import annotations

import urllib.error
import urllib.request

import openai
import pytest
from openai import OpenAI

from tests.local_api.helpers import (
    REQUEST_ID,
    chat_request,
    jsonl,
    read_lines,
    submit,
    wait_until_done,
)
from tests.local_api_server import LocalBatchAPI


def _header_of(server: LocalBatchAPI, method: str, path: str) -> str | None:
    """The `x-request-id` of a raw answer, error or not."""
    request = urllib.request.Request(f"{server.root_url}{path}", method=method)
    request.add_header("Authorization", "Bearer sk-local-test")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers.get("x-request-id")
    except urllib.error.HTTPError as error:
        return error.headers.get("x-request-id")


def _assert_fresh(ids: list[str | None]) -> None:
    assert all(isinstance(i, str) and REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_successful_answers_carry_a_fresh_request_id(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    uploaded = client.files.create(file=("a.jsonl", jsonl([chat_request("a")])), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_until_done(client, batch.id)
    chat = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    ids = [
        uploaded._request_id,
        batch._request_id,
        client.batches.retrieve(batch.id)._request_id,
        client.files.retrieve(uploaded.id)._request_id,
        client.files.with_raw_response.content(done.output_file_id or "").request_id,
        client.batches.with_raw_response.list().request_id,
        chat._request_id,
        client.embeddings.create(model="text-embedding-3-small", input="hi")._request_id,
        _header_of(local_api, "GET", "/admin/settings"),
        _header_of(local_api, "GET", "/health"),
    ]
    _assert_fresh(ids)


def test_error_answers_carry_a_fresh_request_id(
    local_api: LocalBatchAPI, client: OpenAI, start_local_api
) -> None:
    errors: list[openai.APIStatusError] = []
    for call in (
        lambda: client.files.retrieve("file-nope"),
        lambda: client.batches.retrieve("batch_nope"),
        lambda: client.chat.completions.create(model="gpt-4o-mini", messages=[]),
        lambda: client.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        ),
        lambda: start_local_api(api_key="sk-right").client(api_key="sk-wrong").files.list(),
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            call()
        errors.append(caught.value)
    assert [type(error) for error in errors] == [
        openai.NotFoundError,
        openai.NotFoundError,
        openai.BadRequestError,
        openai.NotFoundError,
        openai.AuthenticationError,
    ]
    _assert_fresh(
        [error.request_id for error in errors]
        + [_header_of(local_api, "GET", "/v1/no/such/route"), _header_of(local_api, "GET", "/x")]
    )


def test_injected_429_and_503_carry_a_fresh_request_id(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(http_error_rate=1.0, retry_after_seconds=0.0)
    injected: dict[type, list[str | None]] = {
        openai.RateLimitError: [],
        openai.InternalServerError: [],
    }
    for _ in range(40):
        with pytest.raises(openai.APIStatusError) as caught:
            client.files.list()
        injected[type(caught.value)].append(caught.value.request_id)
    assert all(injected.values()), "both kinds of injected error were answered"
    _assert_fresh([request_id for ids in injected.values() for request_id in ids])


def test_each_line_of_a_batch_has_its_own_request_id(client: OpenAI) -> None:
    lines = [chat_request(f"r{i}", text="the same question") for i in range(50)]
    done = wait_until_done(client, submit(client, lines).id)
    _assert_fresh(
        [line["response"]["request_id"] for line in read_lines(client, done.output_file_id)]
    )
