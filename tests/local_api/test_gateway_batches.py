"""Batches through the gateway: a local Batch API sending each request to an upstream server
(a second local API process, over HTTP) instead of answering it with the local models."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
from pathlib import Path

import pytest

from batch_assets.local_api.__main__ import parse_args, settings_of
from batch_assets.local_api.engine import (
    RequestResult,
    _journal_answers,
    _journaled_answers,
    _rewrite_journal,
)
from tests.local_api.helpers import chat_request, read_lines, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for


def requests(count: int, model: str = "gpt-4o-mini") -> list[dict]:
    return [chat_request(f"req-{index}", f"question {index}", model) for index in range(count)]


def test_every_request_is_answered_by_the_upstream_with_its_usage(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.admin("DELETE", "stats")
    gateway: LocalBatchAPI = start_local_api("--upstream", local_api.base_url)  # type: ignore[operator]
    client = gateway.client()
    batch = wait_until_done(client, submit(client, requests(40)).id)
    assert batch.status == "completed"
    assert batch.request_counts.completed == 40 and batch.request_counts.failed == 0
    outputs = read_lines(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == sorted(f"req-{i}" for i in range(40))
    upstream_calls = local_api.admin("GET", "stats")["calls"]
    assert upstream_calls["POST /v1/chat/completions"] == 40
    bodies = [line["response"]["body"] for line in outputs]
    assert all(body["object"] == "chat.completion" for body in bodies)
    assert batch.usage.input_tokens == sum(body["usage"]["prompt_tokens"] for body in bodies)
    assert batch.usage.output_tokens == sum(body["usage"]["completion_tokens"] for body in bodies)


def test_failures_of_the_upstream_go_to_the_error_file_with_its_status_and_body(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.configure(http_error_rate=1.0, retry_after_seconds=0)
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", local_api.base_url, "--upstream-max-retries", "1"
    )
    client = gateway.client()
    batch = wait_until_done(client, submit(client, requests(3)).id)
    assert (batch.status, batch.request_counts.completed, batch.request_counts.failed) == (
        "completed",
        0,
        3,
    )
    errors = {line["custom_id"]: line for line in read_lines(client, batch.error_file_id)}
    assert {errors[f"req-{i}"]["response"]["status_code"] for i in range(3)} <= {429, 503}
    assert errors["req-0"]["response"]["body"]["error"]["message"]
    assert errors["req-0"]["error"] is None


def test_an_unreachable_upstream_gives_each_request_an_error_line(
    start_local_api: object,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", f"http://127.0.0.1:{port}/v1", "--upstream-max-retries", "0"
    )
    client = gateway.client()
    batch = wait_until_done(client, submit(client, requests(2)).id)
    errors = read_lines(client, batch.error_file_id)
    assert [line["error"]["code"] for line in errors] == ["upstream_unreachable"] * 2
    assert all(line["response"] is None for line in errors)


def test_models_are_routed_to_their_servers_and_unrouted_models_fail(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.admin("DELETE", "stats")
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", f"gpt-4o-mini={local_api.base_url}"
    )
    client = gateway.client()
    routed = wait_until_done(client, submit(client, requests(3)).id)
    assert routed.request_counts.completed == 3
    unrouted = wait_until_done(client, submit(client, requests(2, model="gpt-4o")).id)
    errors = read_lines(client, unrouted.error_file_id)
    assert {line["response"]["status_code"] for line in errors} == {404}
    assert "served by no upstream" in errors[0]["response"]["body"]["error"]["message"]
    assert local_api.admin("GET", "stats")["calls"]["POST /v1/chat/completions"] == 3


def test_cancel_stops_sending_and_keeps_what_was_answered(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.admin("DELETE", "stats")
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", local_api.base_url, "--answer-at-most", "5"
    )
    client = gateway.client()
    batch = submit(client, requests(30))
    wait_for(lambda: client.batches.retrieve(batch.id).request_counts.completed == 5)
    client.batches.cancel(batch.id)
    done = wait_until_done(client, batch.id)
    assert done.status == "cancelled"
    assert (done.request_counts.completed, done.request_counts.failed) == (5, 0)
    errors = read_lines(client, done.error_file_id)
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert len(errors) == 25
    assert local_api.admin("GET", "stats")["calls"]["POST /v1/chat/completions"] == 5


def test_a_restarted_gateway_sends_no_answered_request_again(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.admin("DELETE", "stats")
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", local_api.base_url, "--answer-at-most", "12"
    )
    client = gateway.client()
    batch = submit(client, requests(30))
    wait_for(lambda: client.batches.retrieve(batch.id).request_counts.completed == 12)
    gateway.restart()
    client = gateway.client()
    gateway.configure(answer_at_most=None)
    done = wait_until_done(client, batch.id)
    outputs = read_lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == sorted(f"req-{i}" for i in range(30))
    assert local_api.admin("GET", "stats")["calls"]["POST /v1/chat/completions"] == 30


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--upstream", "nohost/v1"], "--upstream: .*must start with http"),
        (["--upstream", "http://a/v1", "--upstream-concurrency", "0"], "--upstream-concurrency"),
        (["--upstream", "http://a/v1", "--upstream-max-retries", "-1"], "--upstream-max-retries"),
        (["--upstream", "http://a/v1", "--upstream-backoff", "-1"], "--upstream-backoff"),
    ],
)
def test_bad_gateway_flags_are_refused_naming_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        settings_of(parse_args(["--state-dir", "unused", *flags]))


def test_the_upstream_is_a_setting_that_can_change_at_runtime(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.admin("DELETE", "sync_stats")
    server: LocalBatchAPI = start_local_api()  # type: ignore[operator]
    client = server.client()
    local = wait_until_done(client, submit(client, requests(3)).id)
    assert local.request_counts.completed == 3
    assert sync_stats(local_api)["answered"] == 0  # answered by the local models
    server.configure(upstream=[local_api.base_url], upstream_concurrency=2)
    through = wait_until_done(client, submit(client, requests(5)).id)
    assert through.request_counts.completed == 5
    assert sync_stats(local_api)["answered"] == 5
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.configure(upstream=["nohost/v1"])
    assert refused.value.code == 400
    assert "must start with http" in refused.value.read().decode()


def test_the_upstream_key_comes_from_the_named_variable_and_is_not_stored(
    local_api: LocalBatchAPI, start_local_api: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-upstream-secret-0123456789"
    monkeypatch.setenv("TEAM_UPSTREAM_KEY", secret)
    keyed: LocalBatchAPI = start_local_api(api_key=secret, name="keyed-upstream")  # type: ignore[operator]
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", keyed.base_url, "--upstream-api-key-env", "TEAM_UPSTREAM_KEY", name="gw"
    )
    client = gateway.client()
    batch = wait_until_done(client, submit(client, requests(2)).id)
    assert batch.request_counts.completed == 2
    stored = b"".join(path.read_bytes() for path in gateway.state_dir.rglob("*") if path.is_file())
    assert secret.encode() not in stored
    assert secret not in gateway.log()
    assert secret not in json.dumps(gateway.admin("GET", "settings"))


def test_the_journal_gives_back_the_answers_past_the_checkpoint_and_skips_a_torn_line(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "upstream_answers.jsonl"
    answers = [
        (3, RequestResult("c-3", b'{"custom_id":"c-3"}\n', True, 12, 5), 300),
        (1, RequestResult("c-1", b'{"custom_id":"c-1"}\n', False), 100),
    ]
    _journal_answers(journal, answers)
    with journal.open("a") as torn:  # a crash in the middle of an append
        torn.write('[4, 400, "{\\"custom_')
    assert _journaled_answers(journal, 2) == {3: (answers[0][1], 300)}
    kept = _journaled_answers(journal, 0)
    assert kept == {3: (answers[0][1], 300), 1: (answers[1][1], 100)}
    _rewrite_journal(journal, kept)  # as a window opens: the torn line goes
    later = RequestResult("c-5", b'{"custom_id":"c-5"}\n', True, 1, 1)
    _journal_answers(journal, [(5, later, 500)])
    assert _journaled_answers(journal, 0) == {**kept, 5: (later, 500)}


def sync_stats(server: LocalBatchAPI) -> dict:
    return server.admin("GET", "sync_stats")


def test_requests_in_flight_never_exceed_the_concurrency_across_batches(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.configure(sync_seconds_per_request=60)  # held until the setting is lowered
    local_api.admin("DELETE", "sync_stats")
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", local_api.base_url, "--upstream-concurrency", "3"
    )
    client = gateway.client()
    batches = [submit(client, requests(15)) for _ in range(2)]
    wait_for(lambda: sync_stats(local_api)["in_flight"] == 3)
    local_api.configure(sync_seconds_per_request=0)
    for batch in batches:
        assert wait_until_done(client, batch.id).request_counts.completed == 15
    stats = sync_stats(local_api)
    assert stats["max_in_flight"] == 3
    assert stats["answered"] == 30


def test_a_small_batch_is_not_starved_by_a_large_one(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.configure(sync_seconds_per_request=0.1)
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", local_api.base_url, "--upstream-concurrency", "2"
    )
    client = gateway.client()
    large = submit(client, requests(80))
    wait_for(lambda: client.batches.retrieve(large.id).request_counts.completed > 0)
    small = wait_until_done(client, submit(client, requests(4)).id)
    assert small.request_counts.completed == 4
    assert client.batches.retrieve(large.id).request_counts.completed < 40


def test_answers_back_before_a_crash_are_not_asked_for_again(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.admin("DELETE", "sync_stats")
    local_api.configure(sync_fault_queue=["500"])  # one of the first four: retried a minute later
    flags = ["--upstream", local_api.base_url, "--upstream-concurrency", "4"]
    gateway: LocalBatchAPI = start_local_api(*flags, "--upstream-backoff", "60")  # type: ignore[operator]
    client = gateway.client()
    batch = submit(client, requests(30))
    # The answers past that request come back out of order: they are not recorded yet.
    wait_for(lambda: sync_stats(local_api)["answered"] >= 12)
    assert client.batches.retrieve(batch.id).request_counts.completed <= 3
    gateway.stop(signal.SIGKILL)
    gateway.flags = (*flags, "--upstream-backoff", "0")
    gateway.start(gateway.port)
    done = wait_until_done(gateway.client(), batch.id)
    outputs = read_lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == sorted(f"req-{i}" for i in range(30))
    sent = sync_stats(local_api)["answered_bodies"]
    assert len(sent) == 30
    assert max(sent.values()) <= 2
    # At most the requests in flight at the crash (the concurrency) are answered twice.
    assert sum(count == 2 for count in sent.values()) <= 4


def test_bursts_of_429_503_500_and_cut_connections_are_retried_to_an_answer(
    start_local_api: object,
) -> None:
    upstream: LocalBatchAPI = start_local_api(name="upstream")  # type: ignore[operator]
    upstream.configure(
        retry_after_seconds=0, sync_fault_queue=["503", "503", "429", "cut", "cut", "500"]
    )
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", upstream.base_url, "--upstream-backoff", "0", name="gateway"
    )
    client = gateway.client()
    batch = wait_until_done(client, submit(client, requests(10)).id)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (10, 0)
    stats = sync_stats(upstream)
    assert stats["faults"] == {"429": 1, "503": 2, "500": 1, "cut": 2}
    assert stats["answered"] == 10


def test_a_restart_of_the_upstream_mid_batch_loses_no_request(start_local_api: object) -> None:
    upstream: LocalBatchAPI = start_local_api(name="upstream")  # type: ignore[operator]
    upstream.configure(sync_seconds_per_request=60)
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", upstream.base_url, "--upstream-concurrency", "4",
        "--upstream-backoff", "0.05", "--upstream-max-retries", "20", name="gateway",
    )  # fmt: skip
    client = gateway.client()
    batch = submit(client, requests(12))
    wait_for(lambda: sync_stats(upstream)["in_flight"] == 4)
    port = upstream.port
    upstream.stop(signal.SIGKILL)  # the requests in flight are cut; the gateway tries them again
    upstream.start(port)
    done = wait_until_done(client, batch.id)
    assert (done.request_counts.completed, done.request_counts.failed) == (12, 0)
    assert sync_stats(upstream)["answered"] == 12


def test_an_expired_batch_keeps_its_answers_and_sends_nothing_more(
    local_api: LocalBatchAPI, start_local_api: object
) -> None:
    local_api.admin("DELETE", "sync_stats")
    gateway: LocalBatchAPI = start_local_api(  # type: ignore[operator]
        "--upstream", local_api.base_url, "--answer-at-most", "3"
    )
    client = gateway.client()
    batch = submit(client, requests(8))
    wait_for(lambda: client.batches.retrieve(batch.id).request_counts.completed == 3)
    gateway.configure(clock_offset_seconds=2 * 86400)
    done = wait_until_done(client, batch.id)
    assert (done.status, done.request_counts.completed) == ("expired", 3)
    errors = read_lines(client, done.error_file_id)
    assert [line["error"]["code"] for line in errors] == ["batch_expired"] * 5
    assert sync_stats(local_api)["answered"] == 3
