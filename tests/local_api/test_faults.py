"""Fault settings of the local Batch API: timed-out requests, cut downloads, held creates."""

from __future__ import annotations

import hashlib
import time

import openai
import pytest

from batch_assets.local_api.engine import fails_by_rate, times_out_by_rate
from tests.local_api.helpers import (
    chat_request,
    jsonl,
    read_lines,
    submit,
    upload,
    wait_until_done,
)
from tests.local_api_server import LocalBatchAPI, wait_for

IDS = [f"t{i:02d}" for i in range(60)]
DROPPED_HOLD_SECONDS = 1.0
LATER_HOLD_SECONDS = 2.0


def test_timeout_rate_answers_a_fixed_share_with_request_timeout(start_local_api) -> None:
    api: LocalBatchAPI = start_local_api("--timeout-rate", "0.3", "--fail-rate", "0.2")
    client = api.client()
    lines = [chat_request(i) for i in IDS]
    content = jsonl(lines)
    digest = hashlib.blake2b(content, digest_size=16).hexdigest()
    expected_timeouts = {i for i in IDS if times_out_by_rate(i, 0.3, digest)}
    expected_failures = {i for i in IDS if fails_by_rate(i, 0.2, digest)} - expected_timeouts
    assert expected_timeouts and expected_failures

    done = wait_until_done(client, submit(client, lines).id)

    errors = read_lines(client, done.error_file_id)
    outputs = read_lines(client, done.output_file_id)
    timeouts = [line for line in errors if line["response"] is None]
    assert {line["custom_id"] for line in timeouts} == expected_timeouts
    assert all(line["error"]["code"] == "request_timeout" for line in timeouts)
    assert all(line["error"]["message"] for line in timeouts)
    assert {line["custom_id"] for line in errors if line["response"] is not None} == (
        expected_failures
    )
    assert sorted(line["custom_id"] for line in outputs + errors) == IDS
    assert done.request_counts is not None
    assert done.request_counts.failed == len(errors)


def test_timeout_rate_is_set_at_runtime(start_local_api) -> None:
    api: LocalBatchAPI = start_local_api()
    assert api.configure(timeout_rate=1.0)["timeout_rate"] == 1.0
    client = api.client()

    done = wait_until_done(client, submit(client, [chat_request(i) for i in IDS[:5]]).id)

    assert done.output_file_id is None
    assert [line["error"]["code"] for line in read_lines(client, done.error_file_id)] == [
        "request_timeout"
    ] * 5


def test_a_download_is_cut_once_and_the_rest_can_be_fetched_by_range(start_local_api) -> None:
    api: LocalBatchAPI = start_local_api("--cut-downloads-after-bytes", "700")
    client = api.client()
    done = wait_until_done(client, submit(client, [chat_request(i) for i in IDS]).id)
    assert done.output_file_id is not None

    with pytest.raises(openai.APIConnectionError):
        client.files.content(done.output_file_id)
    rest = client.files.with_raw_response.content(
        done.output_file_id, extra_headers={"Range": "bytes=700-"}
    )
    whole = client.files.content(done.output_file_id).content

    assert rest.status_code == 206
    assert len(whole) > 700
    assert rest.content == whole[700:]


def test_a_stalled_download_sends_the_first_bytes_and_the_rest_once_released(
    local_api: LocalBatchAPI, client: openai.OpenAI
) -> None:
    done = wait_until_done(client, submit(client, [chat_request(i) for i in IDS]).id)
    assert done.output_file_id is not None
    whole = client.files.content(done.output_file_id).content
    local_api.configure(stall_downloads_after_bytes=500)

    with client.files.with_streaming_response.content(done.output_file_id) as response:
        stream = response.iter_bytes(100)
        head = b"".join(next(stream) for _ in range(5))
        with pytest.raises(openai.APITimeoutError):
            local_api.client(timeout=0.5).files.content(done.output_file_id)
        local_api.configure(stall_downloads_after_bytes=None)
        rest = b"".join(stream)

    assert head == whole[:500]
    assert head + rest == whole


def test_a_create_held_before_creating_is_dropped_when_its_client_leaves(
    start_local_api,
) -> None:
    api: LocalBatchAPI = start_local_api()
    client = api.client()
    input_file = upload(client, [chat_request("a")])
    api.configure(create_delay_seconds=DROPPED_HOLD_SECONDS)
    impatient = api.client(timeout=0.3)

    with pytest.raises(openai.APITimeoutError):
        impatient.batches.create(
            input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert client.batches.list().data == []
    # Held longer than the dropped create and started after it: had that one been kept, it
    # would have been created before this one is answered.
    api.configure(create_delay_seconds=LATER_HOLD_SECONDS)

    started = time.monotonic()
    batch = client.batches.create(
        input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert time.monotonic() - started >= LATER_HOLD_SECONDS
    assert [b.id for b in client.batches.list().data] == [batch.id]


def test_a_create_held_after_creating_exists_though_its_client_left(start_local_api) -> None:
    api: LocalBatchAPI = start_local_api()
    client = api.client()
    input_file = upload(client, [chat_request("a")])
    api.configure(create_reply_delay_seconds=600)  # held until the setting is lowered

    with pytest.raises(openai.APITimeoutError):
        api.client(timeout=0.3).batches.create(
            input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )

    assert len(wait_for(lambda: client.batches.list().data)) == 1
    api.configure(create_reply_delay_seconds=0)
