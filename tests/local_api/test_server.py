"""Starting the server, its key, its admin endpoint and its fault settings."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import openai
import pytest
from openai import OpenAI

from tests.local_api.helpers import chat_request, read_lines, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for


def test_port_zero_prints_the_real_port_on_loopback(start_local_api) -> None:
    server = start_local_api()
    assert server.ready_line == f"serving http://127.0.0.1:{server.port}/v1"
    assert server.port > 0
    assert server.client().batches.list().data == []


def test_without_a_key_any_bearer_is_accepted(start_local_api) -> None:
    server = start_local_api()
    assert server.client(api_key="anything-at-all").files.list().data == []


def test_with_a_key_only_that_key_is_accepted(start_local_api) -> None:
    server = start_local_api(api_key="sk-right")
    assert server.client(api_key="sk-right").files.list().data == []
    with pytest.raises(openai.AuthenticationError) as caught:
        server.client(api_key="sk-wrong").files.list()
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"
    assert caught.value.body["type"] == "invalid_request_error"
    assert "sk-wrong" not in json.dumps(caught.value.body)
    request = urllib.request.Request(f"{server.base_url}/batches")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(request, timeout=5)
    assert missing.value.code == 401
    assert set(json.loads(missing.value.read())["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(urllib.error.HTTPError) as admin:
        urllib.request.urlopen(f"{server.root_url}/admin/settings", timeout=5)
    assert admin.value.code == 401


def test_admin_changes_settings_at_runtime(local_api: LocalBatchAPI) -> None:
    before = local_api.admin()
    assert before["fail_rate"] == 0.0
    after = local_api.configure(fail_rate=0.25, seconds_per_request=0.5)
    assert (after["fail_rate"], after["seconds_per_request"]) == (0.25, 0.5)
    assert local_api.admin() == after
    with pytest.raises(urllib.error.HTTPError) as caught:
        local_api.configure(fail_rate=2)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"]["param"] == "fail_rate"
    with pytest.raises(urllib.error.HTTPError):
        local_api.configure(no_such_setting=1)


def test_flags_set_the_initial_settings(start_local_api) -> None:
    server = start_local_api(
        "--seconds-per-request",
        "0.5",
        "--fail-rate",
        "0.1",
        "--enqueued-token-limit",
        "9000",
        "--http-error-rate",
        "0.2",
        "--window-seconds",
        "60",
    )
    settings = server.admin()
    assert settings["seconds_per_request"] == 0.5
    assert settings["fail_rate"] == 0.1
    assert settings["enqueued_token_limit"] == 9000
    assert settings["http_error_rate"] == 0.2
    assert settings["window_seconds"] == 60


def test_fail_rate_fails_the_same_requests_of_a_file_and_draws_afresh_for_a_retry(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(fail_rate=0.3)
    lines = [chat_request(f"r{i}") for i in range(300)]
    first = wait_until_done(client, submit(client, lines).id)
    second = wait_until_done(client, submit(client, lines).id)

    failed_first = {line["custom_id"] for line in read_lines(client, first.error_file_id)}
    failed_second = {line["custom_id"] for line in read_lines(client, second.error_file_id)}
    assert failed_first == failed_second
    assert 50 < len(failed_first) < 130
    assert first.request_counts.failed == len(failed_first)
    assert first.request_counts.completed == 300 - len(failed_first)

    retry = [line for line in lines if line["custom_id"] in failed_first]
    again = wait_until_done(client, submit(client, retry).id)
    answered = {line["custom_id"] for line in read_lines(client, again.output_file_id)}
    assert answered and answered < failed_first


def test_http_error_rate_answers_429_and_503_with_retry_after(
    local_api: LocalBatchAPI,
) -> None:
    local_api.configure(http_error_rate=1.0, retry_after_seconds=0.01)
    local_api.admin("DELETE", "stats")
    statuses = set()
    for _ in range(20):
        try:
            urllib.request.urlopen(f"{local_api.base_url}/batches", timeout=5)
        except urllib.error.HTTPError as error:
            statuses.add(error.code)
            assert error.headers["retry-after"] == "1"
            assert error.headers["retry-after-ms"] == "10"
            assert set(json.loads(error.read())["error"]) == {"message", "type", "param", "code"}
    assert statuses == {429, 503}
    assert local_api.admin()["http_error_rate"] == 1.0
    assert local_api.admin("GET", "stats")["injected_errors"] == 20


def test_sdk_retries_through_injected_errors(local_api: LocalBatchAPI) -> None:
    local_api.configure(http_error_rate=0.3, retry_after_seconds=0.01)
    local_api.admin("DELETE", "stats")
    client = local_api.client(max_retries=10)
    batch = submit(client, [chat_request("a"), chat_request("b")])
    done = wait_until_done(client, batch.id)
    assert done.status == "completed"
    assert len(read_lines(client, done.output_file_id)) == 2
    stats = local_api.admin("GET", "stats")
    assert stats["total"] > stats["calls"]["POST /v1/batches"] >= 1


def test_restart_resumes_batches_in_flight(start_local_api) -> None:
    server = start_local_api("--seconds-per-request", "0.01")
    client = server.client()
    ids = [f"r{i:04d}" for i in range(600)]
    running = submit(client, [chat_request(i) for i in ids])
    finished = wait_until_done(client, submit(client, [chat_request("done")]).id)
    wait_for(lambda: client.batches.retrieve(running.id).request_counts.completed >= 100)

    server.stop(signal.SIGKILL)
    server.restart()
    client = server.client()

    assert client.batches.retrieve(finished.id) == finished
    assert read_lines(client, finished.output_file_id)[0]["custom_id"] == "done"
    done = wait_until_done(client, running.id)
    assert done.status == "completed"
    outputs = [line["custom_id"] for line in read_lines(client, done.output_file_id)]
    assert sorted(outputs) == ids
    assert done.request_counts.completed == 600


def test_a_bad_flag_is_refused_naming_it(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "batch_assets.local_api",
            "--state-dir",
            str(tmp_path),
            "--fail-rate",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--fail-rate" in result.stderr
    assert "Traceback" not in result.stderr
