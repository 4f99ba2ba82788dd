"""A batch from upload to results, over real HTTP with the openai SDK."""

from __future__ import annotations

import json

from openai import OpenAI

from tests.local_api.helpers import chat_request, read_lines, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for

SEED_REQUESTS = [
    {
        "custom_id": "request-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-3.5-turbo",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is 2+2?"},
            ],
        },
    },
    {
        "custom_id": "request-2",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-3.5-turbo",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Who won the world series in 2020?"},
            ],
        },
    },
]


def test_seed_two_request_example_runs_end_to_end(client: OpenAI, tmp_path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in SEED_REQUESTS))
    input_file = client.files.create(file=path, purpose="batch")
    batch = client.batches.create(
        input_file_id=input_file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"pipeline": "seed"},
    )
    assert batch.status == "validating"
    assert batch.request_counts.total == 0

    done = wait_until_done(client, batch.id)

    assert done.status == "completed"
    assert done.model == "gpt-3.5-turbo"
    assert done.metadata == {"pipeline": "seed"}
    assert done.request_counts.total == 2
    assert done.request_counts.completed == 2
    assert done.request_counts.failed == 0
    assert done.error_file_id is None
    outputs = read_lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == ["request-1", "request-2"]
    for line in outputs:
        assert line["id"].startswith("batch_req_")
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"].startswith("req_")
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["model"] == "gpt-3.5-turbo"
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["choices"][0]["message"]["content"]
    usage_in = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in outputs)
    usage_out = sum(line["response"]["body"]["usage"]["completion_tokens"] for line in outputs)
    assert done.usage.input_tokens == usage_in > 0
    assert done.usage.output_tokens == usage_out > 0
    assert done.usage.total_tokens == usage_in + usage_out


def test_status_stamps_follow_the_lifecycle(local_api: LocalBatchAPI, client: OpenAI) -> None:
    local_api.configure(seconds_per_request=0.02, finalizing_seconds=0.5)
    batch = submit(client, [chat_request(f"r{i}") for i in range(40)])
    seen = {batch.status}
    running = wait_for(
        lambda: (
            (b := client.batches.retrieve(batch.id)).status == "in_progress"
            and 0 < b.request_counts.completed < 40
            and b
        )
    )
    seen.add(running.status)
    assert running.in_progress_at is not None and running.finalizing_at is None
    assert running.request_counts.total == 40
    finalizing = wait_for(
        lambda: (b := client.batches.retrieve(batch.id)).status == "finalizing" and b
    )
    seen.add(finalizing.status)
    assert finalizing.request_counts.completed == 40
    assert finalizing.output_file_id is None
    done = wait_until_done(client, batch.id)
    seen.add(done.status)

    assert seen == {"validating", "in_progress", "finalizing", "completed"}
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    assert done.expires_at == done.created_at + 86400
    assert done.failed_at is done.expired_at is done.cancelling_at is done.cancelled_at is None


def test_request_counts_grow_while_the_batch_runs(local_api: LocalBatchAPI, client: OpenAI) -> None:
    local_api.configure(seconds_per_request=0.01)
    batch = submit(client, [chat_request(f"r{i}") for i in range(150)])
    counts = []
    while (current := client.batches.retrieve(batch.id)).status not in {"completed", "failed"}:
        counts.append(current.request_counts.completed)
    assert counts == sorted(counts)
    assert len({c for c in counts if 0 < c < 150}) >= 3


def test_output_lines_are_not_in_input_order(client: OpenAI) -> None:
    ids = [f"row-{i:03d}" for i in range(200)]
    done = wait_until_done(client, submit(client, [chat_request(i) for i in ids]).id)
    outputs = [line["custom_id"] for line in read_lines(client, done.output_file_id)]
    assert sorted(outputs) == ids
    assert outputs != ids


def test_output_file_is_a_batch_output_file(client: OpenAI) -> None:
    done = wait_until_done(client, submit(client, [chat_request("only")]).id)
    output = client.files.retrieve(done.output_file_id)
    assert output.purpose == "batch_output"
    assert output.filename == f"{done.id}_output.jsonl"
    assert output.bytes == len(client.files.content(output.id).content)
    assert output.expires_at == output.created_at + 30 * 86400


def test_output_expires_after_is_honoured(local_api: LocalBatchAPI, client: OpenAI) -> None:
    batch = submit(
        client,
        [chat_request("a"), chat_request("b")],
        output_expires_after={"anchor": "created_at", "seconds": 3600},
    )
    done = wait_until_done(client, batch.id)
    output = client.files.retrieve(done.output_file_id)
    assert output.expires_at == output.created_at + 3600

    local_api.configure(clock_offset_seconds=3601)
    wait_for(lambda: output.id not in {f.id for f in client.files.list(purpose="batch_output")})
    assert client.files.retrieve(done.input_file_id).id == done.input_file_id
