"""Every way a batch ends, with the exact contents of its files."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.local_api.helpers import chat_request, read_lines, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for


def _without_ids(lines: list[dict]) -> list[dict]:
    """Lines without their random ids, sorted by custom_id."""
    stripped = []
    for line in lines:
        assert line.pop("id").startswith("batch_req_")
        if line["response"] is not None:
            assert line["response"].pop("request_id").startswith("req_")
        stripped.append(line)
    return sorted(stripped, key=lambda line: line["custom_id"])


def test_all_requests_failed_is_completed_without_output_file(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(fail_rate=1.0)
    done = wait_until_done(client, submit(client, [chat_request("a"), chat_request("b")]).id)

    assert done.status == "completed"
    assert done.output_file_id is None
    assert done.errors is None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 2)
    server_error = {
        "status_code": 500,
        "body": {
            "error": {
                "message": "The server had an error while processing your request. "
                "Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    }
    assert _without_ids(read_lines(client, done.error_file_id)) == [
        {"custom_id": "a", "response": server_error, "error": None},
        {"custom_id": "b", "response": server_error, "error": None},
    ]


def test_a_request_the_endpoint_rejects_gets_an_http_error_line(client: OpenAI) -> None:
    bad = chat_request("bad")
    del bad["body"]["messages"]
    done = wait_until_done(client, submit(client, [chat_request("good"), bad]).id)

    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    [error_line] = read_lines(client, done.error_file_id)
    assert error_line["custom_id"] == "bad"
    assert error_line["error"] is None
    assert error_line["response"]["status_code"] == 400
    assert error_line["response"]["body"]["error"]["param"] == "messages"
    assert [line["custom_id"] for line in read_lines(client, done.output_file_id)] == ["good"]


def test_cancel_keeps_finished_results_and_marks_the_rest(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(answer_at_most=10)
    ids = [f"r{i:03d}" for i in range(100)]
    batch = submit(client, [chat_request(i) for i in ids])
    wait_for(lambda: client.batches.retrieve(batch.id).request_counts.completed == 10)

    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    done = wait_until_done(client, batch.id)

    assert done.status == "cancelled"
    assert done.cancelled_at >= done.cancelling_at
    finished = [line["custom_id"] for line in read_lines(client, done.output_file_id)]
    assert len(set(finished)) == len(finished) == 10 and set(finished) <= set(ids)
    assert done.request_counts.completed == len(finished)
    assert done.request_counts.failed == 0
    unfinished = _without_ids(read_lines(client, done.error_file_id))
    assert unfinished == [
        {
            "custom_id": custom_id,
            "response": None,
            "error": {
                "code": "batch_cancelled",
                "message": "This request was not executed because the batch was cancelled.",
            },
        }
        for custom_id in sorted(set(ids) - set(finished))
    ]


def test_cancel_of_a_finished_batch_is_refused(client: OpenAI) -> None:
    done = wait_until_done(client, submit(client, [chat_request("a")]).id)
    with pytest.raises(openai.BadRequestError, match="status 'completed'"):
        client.batches.cancel(done.id)


def test_window_over_expires_with_finished_results_kept(start_local_api) -> None:
    server = start_local_api("--window-seconds", "60", "--answer-at-most", "50")
    client = server.client()
    ids = [f"r{i:03d}" for i in range(200)]
    batch = submit(client, [chat_request(i) for i in ids])
    assert batch.expires_at == batch.created_at + 60
    wait_for(lambda: client.batches.retrieve(batch.id).request_counts.completed == 50)
    server.configure(clock_offset_seconds=61)  # the window is over

    done = wait_until_done(client, batch.id)

    assert done.status == "expired"
    assert done.expired_at is not None and done.completed_at is None
    finished = [line["custom_id"] for line in read_lines(client, done.output_file_id)]
    assert len(set(finished)) == len(finished) == 50 and set(finished) <= set(ids)
    assert done.request_counts.completed == len(finished)
    assert done.request_counts.failed == 0
    assert _without_ids(read_lines(client, done.error_file_id)) == [
        {
            "custom_id": custom_id,
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window "
                "expired.",
            },
        }
        for custom_id in sorted(set(ids) - set(finished))
    ]


def test_failed_validation_has_errors_and_no_files(client: OpenAI) -> None:
    done = wait_until_done(client, submit(client, [chat_request("a"), chat_request("a")]).id)
    assert done.status == "failed"
    assert done.failed_at is not None
    assert done.output_file_id is None and done.error_file_id is None
    assert [(e.code, e.line) for e in done.errors.data] == [("duplicate_custom_id", 2)]
