"""Large batches are answered by the server and its helper process together: every request once,
with the answers the server gives alone, and the batch still ends when the helper dies."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch_assets.local_api.engine import HELPER_MIN_BATCH_LINES
from batch_assets.local_api.local_models import respond
from tests.local_api.helpers import SENTIMENT_SCHEMA, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for

COUNT = HELPER_MIN_BATCH_LINES + 1000


def _line(row: int) -> dict[str, Any]:
    return {
        "custom_id": f"row-{row}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Review {row}: the straps dig in."}],
            "max_tokens": 100,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "review", "schema": SENTIMENT_SCHEMA, "strict": True},
            },
        },
    }


def _helper_pids(server: LocalBatchAPI) -> list[int]:
    """The server's spawned helper processes."""
    assert server.process is not None
    found = []
    for task in Path(f"/proc/{server.process.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command:
                found.append(int(child))
    return found


def _cpu_seconds(pid: int) -> float:
    """CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _answers(server: LocalBatchAPI, batch_id: str) -> dict[str, Any]:
    client = server.client()
    batch = wait_until_done(client, batch_id, timeout=300)
    assert batch.status == "completed" and batch.request_counts is not None
    assert batch.request_counts.completed == COUNT and batch.request_counts.failed == 0
    assert batch.output_file_id is not None
    lines = client.files.content(batch.output_file_id).text.splitlines()
    answers = {}
    for raw in lines:
        line = json.loads(raw)
        assert line["response"]["status_code"] == 200
        answers[line["custom_id"]] = line["response"]["body"]
    assert len(lines) == len(answers) == COUNT  # each request answered once
    return answers


def _expect_alone(answers: dict[str, Any]) -> None:
    """Each answer says what the local model says for its request, answered here."""
    for row in range(0, COUNT, 97):
        alone = respond("/v1/chat/completions", _line(row)["body"], created=0)
        got = answers[f"row-{row}"]
        assert got["choices"][0]["message"] == alone["choices"][0]["message"]
        assert got["usage"] == alone["usage"]


def test_a_large_batch_is_shared_with_the_helper_and_answered_once(
    start_local_api: Callable[..., LocalBatchAPI],
) -> None:
    server = start_local_api()
    warm = submit(server.client(), [_line(row) for row in range(COUNT)])
    _answers(server, warm.id)
    (helper,) = _helper_pids(server)  # started by the first large batch
    before = _cpu_seconds(helper)
    batch = submit(server.client(), [_line(row) for row in range(COUNT)])
    _expect_alone(_answers(server, batch.id))
    assert _cpu_seconds(helper) - before > 0.05  # it answered a share of them


def test_a_batch_ends_whole_when_the_helper_dies(
    start_local_api: Callable[..., LocalBatchAPI],
) -> None:
    server = start_local_api()
    _answers(server, submit(server.client(), [_line(row) for row in range(COUNT)]).id)
    (helper,) = _helper_pids(server)
    server.configure(seconds_per_request=0.0002)  # slow enough to kill the helper mid-batch
    batch = submit(server.client(), [_line(row) for row in range(COUNT)])
    client = server.client()

    def completed() -> int:
        counts = client.batches.retrieve(batch.id).request_counts
        return 0 if counts is None else counts.completed

    wait_for(lambda: completed() > 1000)
    os.kill(helper, signal.SIGKILL)
    server.configure(seconds_per_request=0.0)
    _expect_alone(_answers(server, batch.id))
    assert _helper_pids(server) == []


def test_a_large_file_validated_in_halves_fails_as_in_one_pass(
    start_local_api: Callable[..., LocalBatchAPI],
) -> None:
    server = start_local_api()
    _answers(server, submit(server.client(), [_line(row) for row in range(COUNT)]).id)
    assert _helper_pids(server)  # warm: large files are now validated in two halves
    client = server.client()
    repeated = [_line(row) for row in range(COUNT)] + [_line(0)]  # row-0 in both halves
    other_model = [_line(row) for row in range(COUNT)]
    for line in other_model[COUNT - 10 :]:
        line["body"]["model"] = "gpt-4o"
    expected = [
        [("duplicate_custom_id", COUNT + 1)],
        [("model_mismatch", number) for number in range(COUNT - 9, COUNT + 1)],
    ]
    for lines, errors in zip((repeated, other_model), expected, strict=True):
        batch = wait_until_done(client, submit(client, lines).id, timeout=120)
        assert batch.status == "failed" and batch.errors is not None
        assert [(e.code, e.line) for e in batch.errors.data] == errors
