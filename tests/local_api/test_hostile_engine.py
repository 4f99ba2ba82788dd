"""Hostile input against the batch engine: poisoned lines, steps that keep failing, and crashes
while a batch's files are published. Each case runs a real server and kills it with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from openai.types import Batch

from batch_assets.local_api.engine import fails_by_rate
from batch_assets.local_api.settings import PublishingStep
from tests.local_api.helpers import chat_request, jsonl, read_lines, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for

PACED = ("--seconds-per-request", "0.05")
FROZEN_SECONDS_PER_REQUEST = 3600.0
GOOD_IDS = [f"g{i:02d}" for i in range(10)]
DEADLINE_SECONDS = 20.0


def _poison_line(endpoint: str, body_json: str) -> str:
    """A request line with custom_id `poison` and a body given as raw JSON text."""
    return f'{{"custom_id":"poison","method":"POST","url":"{endpoint}","body":{body_json}}}'


def _chat_with_schema(property_schema: str) -> str:
    """A chat body whose JSON-schema response_format has one property `n` of this schema."""
    schema = (
        '{"type":"object","properties":{"n":' + property_schema + '},"required":["n"],'
        '"additionalProperties":false}'
    )
    return (
        '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],'
        '"response_format":{"type":"json_schema","json_schema":{"name":"n","strict":true,'
        f'"schema":{schema}}}}}}}'
    )


def _good_line(endpoint: str, custom_id: str) -> dict:
    """A plain request any endpoint of the cases answers."""
    bodies = {
        "/v1/chat/completions": chat_request(custom_id)["body"],
        "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hello"},
        "/v1/responses": {"model": "gpt-4o-mini", "input": "hello"},
    }
    return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": bodies[endpoint]}


@dataclass(frozen=True)
class Poison:
    """One poisoned request line and how its batch must end."""

    endpoint: str
    line: str
    # The code naming line 2 when validation fails the batch; None when the batch completes and
    # the poisoned request gets a 400 error line.
    validation_code: str | None = None


POISONS = {
    "line_nested_100000_deep": Poison(
        "/v1/chat/completions",
        _poison_line("/v1/chat/completions", "[" * 100_000 + "]" * 100_000),
        validation_code="invalid_json_line",
    ),
    "embeddings_input_nested_900_deep": Poison(
        "/v1/embeddings",
        _poison_line(
            "/v1/embeddings",
            '{"model":"text-embedding-3-small","input":' + "[" * 900 + '"x"' + "]" * 900 + "}",
        ),
    ),
    "integer_minimum_1e400": Poison(
        "/v1/chat/completions",
        _poison_line(
            "/v1/chat/completions", _chat_with_schema('{"type":"integer","minimum":1e400}')
        ),
    ),
    "number_multiple_of_1e400": Poison(
        "/v1/chat/completions",
        _poison_line(
            "/v1/chat/completions", _chat_with_schema('{"type":"number","multipleOf":1e400}')
        ),
    ),
    "responses_metadata_1e400": Poison(
        "/v1/responses",
        _poison_line(
            "/v1/responses", '{"model":"gpt-4o-mini","input":"hi","metadata":{"n":1e400}}'
        ),
    ),
    # Python reads it, answering it raised, and the batch object holding it made every
    # GET /v1/batches answer 500; OpenAI's parser refuses it.
    "model_with_a_lone_surrogate": Poison(
        "/v1/chat/completions",
        _poison_line(
            "/v1/chat/completions",
            '{"model":"gpt-4o-mini\\ud800","messages":[{"role":"user","content":"hi"}]}',
        ),
        validation_code="invalid_json_line",
    ),
}


GOOD_AROUND_POISON = ["p0", "p2", "p3"]


def _poisoned_lines(poison: Poison) -> list:
    """Good requests around the poisoned one, which is line 2."""
    good = [_good_line(poison.endpoint, custom_id) for custom_id in GOOD_AROUND_POISON]
    return [good[0], poison.line, *good[1:]]


def _assert_poisoned_batch_ended(client: OpenAI, batch: Batch, poison: Poison) -> None:
    if poison.validation_code is not None:
        assert batch.status == "failed"
        assert batch.errors is not None and batch.errors.data
        first = batch.errors.data[0]
        assert (first.code, first.line) == (poison.validation_code, 2)
        assert first.message
        assert (batch.output_file_id, batch.error_file_id) == (None, None)
        return
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 1)
    outputs = read_lines(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == GOOD_AROUND_POISON
    [error_line] = read_lines(client, batch.error_file_id)
    assert error_line["custom_id"] == "poison"
    assert error_line["error"] is None
    response = error_line["response"]
    error = response["body"]["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (response["status_code"], error["type"]) == (400, "invalid_request_error")
    assert error["message"] and error["param"]


def _assert_all_answered(client: OpenAI, batch: Batch, custom_ids: list[str]) -> None:
    assert batch.status == "completed"
    assert sorted(line["custom_id"] for line in read_lines(client, batch.output_file_id)) == sorted(
        custom_ids
    )
    assert batch.error_file_id is None


@pytest.mark.parametrize("name", POISONS)
def test_a_poisoned_batch_ends_and_later_batches_complete_across_a_kill(
    name: str, start_local_api
) -> None:
    poison = POISONS[name]
    api: LocalBatchAPI = start_local_api(*PACED)
    client = api.client()
    poisoned = submit(client, _poisoned_lines(poison), endpoint=poison.endpoint)
    good = submit(client, [chat_request(i) for i in GOOD_IDS])
    wait_for(
        lambda: client.batches.retrieve(good.id).request_counts.completed >= 1,
        timeout=DEADLINE_SECONDS,
    )

    api.stop(signal.SIGKILL)
    api.restart()
    client = api.client()

    _assert_poisoned_batch_ended(
        client, wait_until_done(client, poisoned.id, DEADLINE_SECONDS), poison
    )
    _assert_all_answered(client, wait_until_done(client, good.id, DEADLINE_SECONDS), GOOD_IDS)
    after = submit(client, [chat_request("after")])
    _assert_all_answered(client, wait_until_done(client, after.id, DEADLINE_SECONDS), ["after"])


def _freeze_when_answered(api: LocalBatchAPI, client: OpenAI, batch_id: str, count: int) -> None:
    """Wait until `count` requests of the batch are answered, then stop it answering more (an
    hour per request), so that what the test does next finds it still in progress."""
    wait_for(
        lambda: client.batches.retrieve(batch_id).request_counts.completed >= count,
        timeout=DEADLINE_SECONDS,
    )
    api.configure(seconds_per_request=FROZEN_SECONDS_PER_REQUEST)
    frozen = client.batches.retrieve(batch_id)
    assert frozen.status == "in_progress"
    assert frozen.request_counts is not None
    assert frozen.request_counts.completed < frozen.request_counts.total


def test_a_batch_whose_step_keeps_failing_is_failed_and_others_go_on(start_local_api) -> None:
    api: LocalBatchAPI = start_local_api(*PACED)
    client = api.client()
    doomed = submit(client, [chat_request(f"d{i}") for i in range(20)])
    _freeze_when_answered(api, client, doomed.id, 1)
    client.files.delete(doomed.input_file_id)
    api.configure(seconds_per_request=float(PACED[1]))
    good = submit(client, [chat_request(i) for i in GOOD_IDS])

    failed = wait_until_done(client, doomed.id, DEADLINE_SECONDS)

    assert failed.status == "failed"
    assert failed.errors is not None
    [error] = failed.errors.data
    assert error.code == "server_error"
    assert error.message is not None
    assert "gave up" in error.message and "FileNotFoundError" in error.message
    _assert_all_answered(client, wait_until_done(client, good.id, DEADLINE_SECONDS), GOOD_IDS)


PUBLISH_IDS = [f"r{i:02d}" for i in range(24)]
FAIL_RATE = 0.3


def _expected_failures(lines: list[dict]) -> set[str]:
    digest = hashlib.blake2b(jsonl(lines), digest_size=16).hexdigest()
    return {i for i in PUBLISH_IDS if fails_by_rate(i, FAIL_RATE, digest)}


def _published_lines(client: OpenAI, file_id: str | None) -> list[dict]:
    """A published file's lines, checked byte for byte against its file object."""
    assert file_id is not None
    raw = client.files.content(file_id).content
    assert client.files.retrieve(file_id).bytes == len(raw)
    assert b"\x00" not in raw
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]


@pytest.mark.parametrize("step", typing.get_args(PublishingStep))
def test_a_kill_at_any_step_of_publishing_leaves_exact_files(step: str, start_local_api) -> None:
    api: LocalBatchAPI = start_local_api("--fail-rate", str(FAIL_RATE))
    client = api.client()
    lines = [chat_request(i) for i in PUBLISH_IDS]
    failures = _expected_failures(lines)
    assert failures and len(failures) < len(PUBLISH_IDS)
    api.configure(pause_publishing_at=step)
    batch = submit(client, lines)
    wait_for(lambda: f"{batch.id} paused at step '{step}'" in api.log(), timeout=DEADLINE_SECONDS)
    assert client.batches.retrieve(batch.id).status == "finalizing"

    api.stop(signal.SIGKILL)
    api.restart()
    client = api.client()
    assert api.admin()["pause_publishing_at"] is None

    done = wait_until_done(client, batch.id, DEADLINE_SECONDS)
    assert done.status == "completed"
    outputs = _published_lines(client, done.output_file_id)
    errors = _published_lines(client, done.error_file_id)
    assert sorted(line["custom_id"] for line in outputs) == sorted(set(PUBLISH_IDS) - failures)
    assert sorted(line["custom_id"] for line in errors) == sorted(failures)
    assert all(line["response"]["status_code"] == 200 for line in outputs)
    assert all(line["response"]["status_code"] == 500 for line in errors)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (
        len(outputs),
        len(errors),
    )


def _work_file(api: LocalBatchAPI, batch_id: str) -> Path:
    return api.state_dir / "work" / batch_id / "output.jsonl"


def test_a_restart_that_finds_work_lines_lost_answers_them_again(start_local_api) -> None:
    api: LocalBatchAPI = start_local_api(*PACED)
    client = api.client()
    ids = [f"w{i:02d}" for i in range(30)]
    batch = submit(client, [chat_request(i) for i in ids])
    _freeze_when_answered(api, client, batch.id, 5)
    api.stop(signal.SIGKILL)
    _work_file(api, batch.id).write_bytes(b"")

    api.restart()  # with the pace of its flags again
    client = api.client()
    done = wait_until_done(client, batch.id, DEADLINE_SECONDS)

    assert done.status == "completed"
    outputs = _published_lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == ids
    assert done.request_counts is not None
    assert done.request_counts.completed == len(ids)


def test_a_batch_whose_checkpointed_output_is_gone_fails_instead_of_publishing_zeros(
    start_local_api,
) -> None:
    api: LocalBatchAPI = start_local_api()
    client = api.client()
    api.configure(finalizing_seconds=3600)
    batch = submit(client, [chat_request(i) for i in GOOD_IDS])
    wait_for(
        lambda: client.batches.retrieve(batch.id).status == "finalizing",
        timeout=DEADLINE_SECONDS,
    )
    api.stop(signal.SIGKILL)
    _work_file(api, batch.id).unlink()

    api.restart()
    client = api.client()
    done = wait_until_done(client, batch.id, DEADLINE_SECONDS)

    assert done.status == "failed"
    assert done.output_file_id is None
    assert done.errors is not None
    [error] = done.errors.data
    assert error.code == "server_error"
    assert error.message is not None and "gone from disk" in error.message
    after = submit(client, [chat_request("after")])
    _assert_all_answered(client, wait_until_done(client, after.id, DEADLINE_SECONDS), ["after"])


SLOW_REQUESTS = 64
CANCEL_ANSWER_SECONDS = 1.0


def _slow_chat_request(custom_id: str) -> dict:
    """A chat request within every bound that still takes the local model 0.1 s or more to
    answer: a JSON answer of 20,000 strings of 20 characters."""
    strings = {"type": "array", "minItems": 20_000, "items": {"type": "string", "minLength": 20}}
    schema = {
        "type": "object",
        "properties": {"strings": strings},
        "required": ["strings"],
        "additionalProperties": False,
    }
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "List strings."}],
        "max_completion_tokens": 1_000_000,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "strings", "strict": True, "schema": schema},
        },
    }
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def test_a_cancel_answers_within_a_second_while_slow_requests_are_answered(
    start_local_api,
) -> None:
    api: LocalBatchAPI = start_local_api()
    client = api.client()
    batch = submit(client, [_slow_chat_request(f"s{i:02d}") for i in range(SLOW_REQUESTS)])
    wait_for(
        lambda: client.batches.retrieve(batch.id).status == "in_progress",
        timeout=DEADLINE_SECONDS,
    )

    started = time.monotonic()
    cancelling = client.with_options(timeout=DEADLINE_SECONDS).batches.cancel(batch.id)
    took = time.monotonic() - started

    assert cancelling.status == "cancelling"
    assert took < CANCEL_ANSWER_SECONDS, f"the cancel took {took:.2f} s"
    done = wait_until_done(client, batch.id, DEADLINE_SECONDS)
    assert done.status == "cancelled"
    assert done.request_counts is not None
    answered = done.request_counts.completed
    assert answered < SLOW_REQUESTS
    unfinished = read_lines(client, done.error_file_id)
    assert {line["error"]["code"] for line in unfinished} == {"batch_cancelled"}
    assert len(unfinished) == SLOW_REQUESTS - answered


def test_a_cancel_while_an_expired_batch_is_published_is_refused(start_local_api) -> None:
    api: LocalBatchAPI = start_local_api(*PACED)
    client = api.client()
    batch = submit(client, [chat_request(f"e{i}") for i in range(10)])
    _freeze_when_answered(api, client, batch.id, 1)
    api.configure(pause_publishing_at="before_output", clock_offset_seconds=2 * 86400)
    wait_for(
        lambda: f"{batch.id} paused at step 'before_output'" in api.log(),
        timeout=DEADLINE_SECONDS,
    )
    assert client.batches.retrieve(batch.id).status == "in_progress"

    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.cancel(batch.id)

    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "Cannot cancel a batch that is already ending: it becomes 'expired' once its "
        "files are published.",
        "type": "invalid_request_error",
        "param": "batch_id",
        "code": None,
    }
    api.configure(pause_publishing_at=None)
    done = wait_until_done(client, batch.id, DEADLINE_SECONDS)
    assert done.status == "expired"
    assert (done.cancelling_at, done.cancelled_at) == (None, None)
    assert done.request_counts is not None
    unfinished = read_lines(client, done.error_file_id)
    assert {line["error"]["code"] for line in unfinished} == {"batch_expired"}
    assert len(unfinished) == 10 - done.request_counts.completed
