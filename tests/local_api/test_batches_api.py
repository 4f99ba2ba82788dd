"""`/v1/batches` requests that the API refuses, and listing across pages."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.local_api.helpers import chat_request, submit, upload


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"endpoint": "/v1/images/generations"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        (
            {"output_expires_after": {"anchor": "created_at", "seconds": 10}},
            "output_expires_after.seconds",
        ),
        ({"input_file_id": "file-doesnotexist"}, "input_file_id"),
    ],
)
def test_create_refuses_bad_arguments(client: OpenAI, changes: dict[str, Any], param: str) -> None:
    arguments = {
        "input_file_id": upload(client, [chat_request("a")]).id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        **changes,
    }
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as caught:
        client.batches.create(**arguments)
    assert caught.value.body["param"] == param
    assert caught.value.body["type"] == "invalid_request_error"


def test_create_refuses_a_file_that_is_not_for_batch(client: OpenAI) -> None:
    other = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(
            input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="24h"
        )


def test_unknown_batch_is_404_in_the_error_envelope(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.batches.retrieve("batch_0000")
    assert caught.value.body == {
        "message": "No such Batch object: batch_0000",
        "type": "invalid_request_error",
        "param": "batch_id",
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_0000")


def test_list_pages_newest_first_across_several_pages(start_local_api) -> None:
    client = start_local_api().client()
    created = [submit(client, [chat_request("a")]).id for _ in range(7)]

    first = client.batches.list(limit=3)
    assert [b.id for b in first.data] == created[::-1][:3]
    assert first.has_more is True
    second = client.batches.list(limit=3, after=first.data[-1].id)
    assert [b.id for b in second.data] == created[::-1][3:6]
    last = client.batches.list(limit=3, after=second.data[-1].id)
    assert [b.id for b in last.data] == created[::-1][6:]
    assert last.has_more is False
    assert [b.id for b in client.batches.list(limit=2)] == created[::-1]
    assert len(client.batches.list().data) == 7
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.list(limit=101)
    assert caught.value.body["param"] == "limit"
