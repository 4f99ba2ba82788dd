"""The upstream pool against a real upstream: a second local Batch API process over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from batch_assets.local_api.upstream import (
    UpstreamAnswer,
    UpstreamConfig,
    UpstreamPool,
    UpstreamRoutes,
)
from tests.local_api_server import LocalBatchAPI, wait_for

CHAT = "/v1/chat/completions"


def body(text: str, model: str = "gpt-4o-mini") -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


@pytest.fixture
def pool_for(local_api: LocalBatchAPI) -> Iterator[object]:
    """Make pools on the shared local API as the upstream; all closed after the test."""
    pools: list[UpstreamPool] = []

    def make(**options: object) -> UpstreamPool:
        options.setdefault("routes", UpstreamRoutes(local_api.base_url))
        pools.append(UpstreamPool(UpstreamConfig(**options)))  # type: ignore[arg-type]
        return pools[-1]

    yield make
    for pool in pools:
        pool.close()


def collect(pool: UpstreamPool, batch_id: str, count: int) -> dict[int, UpstreamAnswer]:
    """Take the batch's answers until `count` came back."""
    answers: dict[int, UpstreamAnswer] = {}

    def all_back() -> bool:
        answers.update(pool.take(batch_id))
        return len(answers) >= count

    wait_for(all_back, timeout=60)
    return answers


def test_routes_send_each_model_to_its_server_and_the_rest_to_the_default() -> None:
    routes = UpstreamRoutes.parse(
        ["http://gpu-a:8000/v1/", "llama-3=http://gpu-b:8001/v1", "qwen=https://q.example/v1"]
    )
    assert routes.url_for("gpt-4o-mini", CHAT) == "http://gpu-a:8000/v1/chat/completions"
    assert routes.url_for("llama-3", "/v1/embeddings") == "http://gpu-b:8001/v1/embeddings"
    assert routes.url_for("qwen", CHAT) == "https://q.example/v1/chat/completions"
    only_models = UpstreamRoutes.parse(["llama-3=http://gpu-b:8001/v1"])
    assert only_models.url_for("other", CHAT) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["gpu-a:8000/v1"], "must start with http"),
        (["http://a/v1", "http://b/v1"], "one default URL"),
        (["m=http://a/v1", "m=http://b/v1"], "routed twice"),
    ],
)
def test_bad_routes_are_refused_naming_the_value(values: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UpstreamRoutes.parse(values)


def test_every_request_of_every_batch_is_answered_by_the_upstream(
    local_api: LocalBatchAPI, pool_for: object
) -> None:
    pool = pool_for(concurrency=4)  # type: ignore[operator]
    url = local_api.base_url + "/chat/completions"
    for batch_id in ("batch_a", "batch_b"):
        for key in range(25):
            pool.submit(batch_id, key, url, body(f"{batch_id} {key}"))
    for batch_id in ("batch_a", "batch_b"):
        answers = collect(pool, batch_id, 25)
        assert sorted(answers) == list(range(25))
        assert {answer.status_code for answer in answers.values()} == {200}
        assert all(answer.body["object"] == "chat.completion" for answer in answers.values())  # type: ignore[index]
        assert {answer.attempts for answer in answers.values()} == {1}
        assert pool.pending(batch_id) == 0


def test_a_client_error_is_final_and_kept_with_the_upstreams_body(
    local_api: LocalBatchAPI, pool_for: object
) -> None:
    pool = pool_for(max_retries=3)  # type: ignore[operator]
    pool.submit("batch_a", 0, local_api.base_url + "/chat/completions", {"model": "gpt-4o-mini"})
    (answer,) = collect(pool, "batch_a", 1).values()
    assert answer.status_code == 400
    assert answer.attempts == 1
    assert "messages" in answer.body["error"]["message"]  # type: ignore[index]


def test_429_and_503_are_retried_and_the_last_answer_is_kept(
    local_api: LocalBatchAPI, pool_for: object
) -> None:
    local_api.admin("DELETE", "stats")
    local_api.configure(http_error_rate=1.0, retry_after_seconds=0)
    pool = pool_for(max_retries=2, backoff_seconds=0)  # type: ignore[operator]
    pool.submit("batch_a", 7, local_api.base_url + "/chat/completions", body("hi"))
    (answer,) = collect(pool, "batch_a", 1).values()
    assert answer.status_code in {429, 503}
    assert answer.attempts == 3
    assert answer.body["error"]["message"]  # type: ignore[index]
    calls = local_api.admin("GET", "stats")["calls"]
    assert calls["POST /v1/chat/completions"] == 3


def test_an_unreachable_upstream_fails_the_request_after_its_retries(pool_for: object) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    pool = pool_for(routes=UpstreamRoutes(url), max_retries=2, backoff_seconds=0)  # type: ignore[operator]
    pool.submit("batch_a", 0, url + "/chat/completions", body("hi"))
    (answer,) = collect(pool, "batch_a", 1).values()
    assert (answer.status_code, answer.body, answer.attempts) == (None, None, 3)
    assert "Cannot connect" in (answer.failure or "")


def test_forget_sends_no_more_of_a_batch(local_api: LocalBatchAPI, pool_for: object) -> None:
    local_api.admin("DELETE", "stats")
    local_api.configure(http_error_rate=1.0, retry_after_seconds=0.2)
    pool = pool_for(concurrency=1, max_retries=50)  # type: ignore[operator]
    url = local_api.base_url + "/chat/completions"
    for key in range(20):
        pool.submit("batch_a", key, url, body(str(key)))
    wait_for(lambda: local_api.admin("GET", "stats")["calls"].get("POST /v1/chat/completions"))
    pool.forget("batch_a")
    assert pool.pending("batch_a") == 0
    local_api.configure(http_error_rate=0.0)
    pool.submit("batch_b", 0, url, body("after"))
    collect(pool, "batch_b", 1)
    assert pool.take("batch_a") == []
