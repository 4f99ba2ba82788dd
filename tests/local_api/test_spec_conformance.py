"""Every JSON body the server returns validates against the official OpenAI spec."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from openai import OpenAI

from tests.local_api.helpers import chat_request, jsonl, submit, upload, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.openapi_spec import assert_conforms, spec_errors


def _raw(server: LocalBatchAPI, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """Status and JSON body of a raw HTTP call."""
    request = urllib.request.Request(f"{server.base_url}{path}", method=method, **kwargs)
    request.add_header("Authorization", "Bearer sk-local-test")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_relaxation_allows_null_only_outside_required() -> None:
    batch = {
        "id": "batch_1",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-1",
        "completion_window": "24h",
        "status": "validating",
        "created_at": 1,
        "output_file_id": None,
    }
    assert spec_errors(batch, "Batch") == []
    assert spec_errors(batch, "Batch", relaxed=False) == [
        "output_file_id: None is not of type 'string'"
    ]
    assert spec_errors({**batch, "input_file_id": None}, "Batch") == [
        "input_file_id: None is not of type 'string'"
    ]


OUTPUT_LINE = {
    "id": "batch_req_6734bd8e",
    "custom_id": "c1",
    "response": {"status_code": 200, "request_id": "req_" + "a" * 32, "body": {"id": "x"}},
    "error": None,
}
ERROR_BODY = {"error": {"message": "no", "type": "server_error", "param": None, "code": None}}
UNANSWERED = {"code": "batch_expired", "message": "This request could not be executed."}


@pytest.mark.parametrize(
    ("line", "schema", "fits"),
    [
        ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}, "in", True),
        ({"custom_id": "a", "method": "GET", "url": "/v1/embeddings", "body": {}}, "in", False),
        ({"custom_id": "a", "method": "POST", "url": "/v1/files", "body": {}}, "in", False),
        ({"custom_id": "", "method": "POST", "url": "/v1/embeddings", "body": {}}, "in", False),
        ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings"}, "in", False),
        (OUTPUT_LINE, "out", True),
        (
            {**OUTPUT_LINE, "response": {**OUTPUT_LINE["response"], "status_code": 500}},
            "out",
            False,
        ),
        ({**OUTPUT_LINE, "response": {**OUTPUT_LINE["response"], "request_id": "r"}}, "out", False),
        ({**OUTPUT_LINE, "id": "req_1"}, "out", False),
        (
            {**OUTPUT_LINE, "response": {**OUTPUT_LINE["response"], "status_code": 500}},
            "err",
            False,
        ),
        (
            {
                **OUTPUT_LINE,
                "response": {**OUTPUT_LINE["response"], "status_code": 500, "body": ERROR_BODY},
            },
            "err",
            True,
        ),
        ({**OUTPUT_LINE, "response": None, "error": UNANSWERED}, "err", True),
        ({**OUTPUT_LINE, "response": None, "error": {**UNANSWERED, "code": "oops"}}, "err", False),
        ({**OUTPUT_LINE, "error": UNANSWERED}, "err", False),
    ],
)
def test_line_schemas_take_only_what_the_api_writes(line: dict, schema: str, fits: bool) -> None:
    name = {"in": "BatchRequestInput", "out": "BatchOutputLine", "err": "BatchErrorLine"}[schema]
    assert (spec_errors(line, name) == []) is fits


def test_batches_in_every_status_conform(local_api: LocalBatchAPI, client: OpenAI) -> None:
    bodies = []
    local_api.configure(seconds_per_request=0.02, finalizing_seconds=0.3)
    input_file = upload(client, [chat_request(f"r{i}") for i in range(60)])
    request = {
        "input_file_id": input_file.id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    status, created = _raw(local_api, "POST", "/batches", data=json.dumps(request).encode())
    assert status == 200
    bodies.append(created)
    running = client.batches.retrieve(created["id"])
    wait_for(lambda: client.batches.retrieve(running.id).status == "in_progress")
    bodies.append(_raw(local_api, "GET", f"/batches/{running.id}")[1])
    wait_for(lambda: client.batches.retrieve(running.id).status == "finalizing")
    bodies.append(_raw(local_api, "GET", f"/batches/{running.id}")[1])
    wait_until_done(client, running.id)
    bodies.append(_raw(local_api, "GET", f"/batches/{running.id}")[1])

    cancelled = submit(client, [chat_request(f"r{i}") for i in range(60)])
    bodies.append(_raw(local_api, "POST", f"/batches/{cancelled.id}/cancel")[1])
    wait_until_done(client, cancelled.id)
    bodies.append(_raw(local_api, "GET", f"/batches/{cancelled.id}")[1])

    failed = wait_until_done(client, submit(client, ["oops"]).id)
    bodies.append(_raw(local_api, "GET", f"/batches/{failed.id}")[1])
    bodies.append(_raw(local_api, "GET", "/batches?limit=5")[1])

    statuses = [body["status"] for body in bodies[:-1]]
    assert statuses == [
        "validating",
        "in_progress",
        "finalizing",
        "completed",
        "cancelling",
        "cancelled",
        "failed",
    ]
    for body in bodies[:-1]:
        assert_conforms(body, "Batch")
    assert_conforms(bodies[-1], "ListBatchesResponse")


def test_expired_batch_conforms(start_local_api) -> None:
    server = start_local_api("--seconds-per-request", "0.05", "--window-seconds", "0.5")
    batch = submit(server.client(), [chat_request(f"r{i}") for i in range(40)])
    wait_until_done(server.client(), batch.id)
    status, body = _raw(server, "GET", f"/batches/{batch.id}")
    assert (status, body["status"]) == (200, "expired")
    assert_conforms(body, "Batch")


def test_file_bodies_conform(local_api: LocalBatchAPI, client: OpenAI) -> None:
    uploaded = upload(client, [chat_request("a")])
    assert_conforms(_raw(local_api, "GET", f"/files/{uploaded.id}")[1], "OpenAIFile")
    assert_conforms(_raw(local_api, "GET", "/files?limit=2")[1], "ListFilesResponse")
    done = wait_until_done(
        client,
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id,
    )
    assert_conforms(_raw(local_api, "GET", f"/files/{done.output_file_id}")[1], "OpenAIFile")
    status, deleted = _raw(local_api, "DELETE", f"/files/{done.output_file_id}")
    assert status == 200
    assert_conforms(deleted, "DeleteFileResponse")


def test_upload_response_conforms(local_api: LocalBatchAPI) -> None:
    boundary = "xyz"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + jsonl([chat_request("a")])
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, created = _raw(
        local_api,
        "POST",
        "/files",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 200
    assert_conforms(created, "OpenAIFile")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/files/file-nope", 404),
        ("GET", "/batches/batch_nope", 404),
        ("GET", "/batches?limit=0", 400),
        ("POST", "/batches", 400),
        ("GET", "/no/such/route", 404),
    ],
)
def test_error_bodies_conform(
    local_api: LocalBatchAPI, method: str, path: str, status: int
) -> None:
    got, body = _raw(local_api, method, path, data=b"{}" if method == "POST" else None)
    assert got == status
    assert_conforms(body, "ErrorResponse")


def test_auth_error_conforms(start_local_api) -> None:
    server = start_local_api(api_key="sk-right")
    status, body = _raw(server, "GET", "/files")
    assert status == 401
    assert_conforms(body, "ErrorResponse")
