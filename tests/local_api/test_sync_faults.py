"""Faults, holds and counts of the synchronous endpoints, as an upstream of a gateway sees them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from batch_assets.local_api.inference_api import ConnectionCut, DroppedConnection
from tests.local_api_server import LocalBatchAPI, wait_for

CHAT = "/chat/completions"
HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
GOODBYE = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Goodbye"}]}
HELD_CALLS = 6
HOLD_SECONDS = 120  # longer than a client waits: held answers come only once released


@pytest.fixture
def api(local_api: LocalBatchAPI) -> LocalBatchAPI:
    """The shared server, its settings put back afterwards and its sync stats counted from 0."""
    local_api.admin("DELETE", "sync_stats")
    return local_api


@pytest.fixture
def http(api: LocalBatchAPI) -> Iterator[httpx.Client]:
    """A plain httpx client for the server's /v1."""
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        yield client


def digest(body: dict[str, Any]) -> str:
    """What /admin/sync_stats names a body by."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def sync_stats(api: LocalBatchAPI) -> dict[str, Any]:
    """The server's counts of synchronous calls."""
    stats: dict[str, Any] = api.admin("GET", "sync_stats")
    return stats


def test_queued_faults_are_handed_out_in_order_once_each(
    api: LocalBatchAPI, http: httpx.Client
) -> None:
    api.configure(sync_fault_queue=["503", "429", "500", "429"], retry_after_seconds=2.5)

    first = http.post(CHAT, json=HELLO)
    left = api.admin("GET", "settings")["sync_fault_queue"]
    rest = [http.post(CHAT, json=HELLO) for _ in range(4)]

    assert left == ["429", "500", "429"]
    assert [r.status_code for r in [first, *rest]] == [503, 429, 500, 429, 200]
    for throttled in (first, rest[0], rest[2]):
        assert throttled.headers["retry-after"] == "3"
        assert throttled.headers["retry-after-ms"] == "2500"
    assert first.json()["error"]["type"] == "server_error"
    assert rest[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert rest[1].json()["error"]["type"] == "server_error"
    assert "retry-after" not in rest[1].headers
    assert rest[3].json()["object"] == "chat.completion"
    assert api.admin("GET", "settings")["sync_fault_queue"] == []
    stats = sync_stats(api)
    assert stats["faults"] == {"429": 2, "503": 1, "500": 1, "cut": 0}
    assert (stats["received"], stats["answered"], stats["in_flight"]) == (5, 1, 0)


def test_the_sdk_sees_each_fault_as_its_status(api: LocalBatchAPI) -> None:
    api.configure(sync_fault_queue=["429", "503", "500"])
    client = api.client()

    raised = []
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**HELLO)
        raised.append(caught.value)

    assert [type(error) for error in raised] == [
        openai.RateLimitError,
        openai.InternalServerError,
        openai.InternalServerError,
    ]
    assert [error.status_code for error in raised] == [429, 503, 500]
    assert client.chat.completions.create(**HELLO).choices


def test_a_cut_closes_the_connection_without_a_byte_of_answer(
    api: LocalBatchAPI, http: httpx.Client
) -> None:
    api.configure(sync_fault_queue=["cut", "cut", "cut"])
    logged = len(api.log())
    body = json.dumps(HELLO).encode()
    head = (
        f"POST /v1{CHAT} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as raw:
        raw.sendall(head + body)
        received = raw.recv(4096)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        http.post(CHAT, json=HELLO)
    with pytest.raises(openai.APIConnectionError):
        api.client().chat.completions.create(**HELLO)
    after = http.post(CHAT, json=HELLO)

    assert received == b""
    assert after.status_code == 200
    stats = sync_stats(api)
    assert stats["faults"]["cut"] == 3
    assert (stats["received"], stats["answered"], stats["in_flight"]) == (4, 1, 0)
    # Dropped on purpose, not by an error: uvicorn logs nothing and answers nothing.
    assert "ASGI" not in api.log()[logged:]


def test_held_answers_are_in_flight_together_until_the_hold_is_lowered(
    api: LocalBatchAPI,
) -> None:
    api.configure(sync_seconds_per_request=HOLD_SECONDS)
    client = api.client(timeout=30)
    with ThreadPoolExecutor(HELD_CALLS) as pool:
        try:
            calls = [
                pool.submit(client.chat.completions.create, **HELLO) for _ in range(HELD_CALLS)
            ]
            wait_for(lambda: sync_stats(api)["in_flight"] == HELD_CALLS)
            held = sync_stats(api)
        finally:
            api.configure(sync_seconds_per_request=0)  # releases the held answers
        answers = [call.result() for call in calls]

    assert held["max_in_flight"] == held["received"] == HELD_CALLS
    assert held["answered"] == 0
    assert all(answer.choices for answer in answers)
    stats = sync_stats(api)
    assert stats["max_in_flight"] == stats["answered"] == HELD_CALLS
    assert stats["in_flight"] == 0


def test_a_hold_applies_to_faults_too(api: LocalBatchAPI, http: httpx.Client) -> None:
    api.configure(sync_seconds_per_request=HOLD_SECONDS, sync_fault_queue=["429"])
    with ThreadPoolExecutor(1) as pool:
        try:
            call = pool.submit(http.post, CHAT, json=HELLO)
            wait_for(lambda: sync_stats(api)["in_flight"] == 1)
            held_done = call.done()
        finally:
            api.configure(sync_seconds_per_request=0)
        answer = call.result()

    assert not held_done
    assert answer.status_code == 429


def test_answered_bodies_count_each_body_answered_200(
    api: LocalBatchAPI, http: httpx.Client
) -> None:
    api.configure(sync_fault_queue=["500"])
    http.post(CHAT, json=HELLO)  # faulted: not answered
    http.post(CHAT, json=HELLO)
    # The same body with its keys in another order and spaced out is the same body.
    http.post(CHAT, content=json.dumps(dict(reversed(HELLO.items())), indent=2))
    http.post(CHAT, json=GOODBYE)
    rejected = http.post(CHAT, json={**GOODBYE, "stream": True})

    assert rejected.status_code == 400
    stats = sync_stats(api)
    assert stats["answered_bodies"] == {digest(HELLO): 2, digest(GOODBYE): 1}
    assert (stats["received"], stats["answered"]) == (5, 3)


def test_delete_counts_from_zero(api: LocalBatchAPI, http: httpx.Client) -> None:
    api.configure(sync_fault_queue=["503"])
    http.post(CHAT, json=HELLO)
    http.post(CHAT, json=HELLO)
    assert sync_stats(api)["received"] == 2

    reset = api.admin("DELETE", "sync_stats")

    zero = {
        "in_flight": 0,
        "max_in_flight": 0,
        "received": 0,
        "answered": 0,
        "faults": {"429": 0, "503": 0, "500": 0, "cut": 0},
        "answered_bodies": {},
    }
    assert reset == zero
    assert sync_stats(api) == zero


def test_fail_rate_answers_500(api: LocalBatchAPI, http: httpx.Client) -> None:
    api.configure(sync_fail_rate=1.0)

    statuses = [http.post(CHAT, json=HELLO).status_code for _ in range(3)]

    assert statuses == [500, 500, 500]
    assert sync_stats(api)["faults"]["500"] == 3


def test_only_known_faults_and_rates_are_accepted(api: LocalBatchAPI) -> None:
    for bad in ({"sync_fault_queue": ["404"]}, {"sync_fail_rate": 1.5}):
        with pytest.raises(Exception, match="400"):
            api.configure(**bad)
    assert api.admin("GET", "settings")["sync_fault_queue"] == []


def test_a_cut_under_another_server_drops_the_connection_mid_answer() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        raise AssertionError("nothing to receive")

    scope = {"type": "http", "extensions": {}}
    with pytest.raises(ConnectionCut):
        asyncio.run(DroppedConnection()(scope, receive, send))

    assert [message["type"] for message in sent] == ["http.response.start"]
