"""The `{anchor, seconds}` expiry settings of files and batches, and their refusals to the byte."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

from batch_assets.local_api.errors import APIError
from batch_assets.local_api.expiry import (
    BATCH_OUTPUT_EXPIRES_AFTER,
    FILE_EXPIRES_AFTER,
    expiry_seconds,
    form_integer,
)
from tests.local_api.helpers import chat_request, upload


def envelope(message: str, param: str) -> bytes:
    """The bytes of a 400 the local API answers, as OpenAI's error envelope."""
    return (
        '{"error": {"message": "' + message + '", "type": "invalid_request_error", '
        '"param": "' + param + '", "code": null}}'
    ).encode()


FILE_REFUSALS = {
    "wrong_anchor": (
        {"anchor": "last_active_at", "seconds": 3600},
        envelope(
            "Invalid 'expires_after[anchor]': the only supported anchor is 'created_at'.",
            "expires_after[anchor]",
        ),
    ),
    "seconds_not_an_integer": (
        {"anchor": "created_at", "seconds": "soon"},
        envelope(
            "Invalid 'expires_after[seconds]': expected an integer.", "expires_after[seconds]"
        ),
    ),
    "seconds_too_few": (
        {"anchor": "created_at", "seconds": 60},
        envelope(
            "Invalid 'expires_after[seconds]': 60 is out of range; expected 3600 to 2592000.",
            "expires_after[seconds]",
        ),
    ),
}
BATCH_REFUSALS = {
    "wrong_anchor": (
        {"anchor": "completed_at", "seconds": 3600},
        envelope(
            "Invalid 'output_expires_after': 'anchor' must be 'created_at'.",
            "output_expires_after.anchor",
        ),
    ),
    "not_an_object": (
        "3600",
        envelope(
            "Invalid 'output_expires_after': 'anchor' must be 'created_at'.",
            "output_expires_after.anchor",
        ),
    ),
    "seconds_as_a_string": (
        {"anchor": "created_at", "seconds": "3600"},
        envelope(
            "Invalid 'output_expires_after.seconds': expected an integer.",
            "output_expires_after.seconds",
        ),
    ),
    "seconds_too_many": (
        {"anchor": "created_at", "seconds": 2592001},
        envelope(
            "Invalid 'output_expires_after.seconds': 2592001 is out of range; expected 3600 to "
            "2592000.",
            "output_expires_after.seconds",
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(FILE_REFUSALS))
def test_a_file_upload_with_a_bad_expires_after_is_refused(client: OpenAI, name: str) -> None:
    setting, answer = FILE_REFUSALS[name]
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(
            file=("short.jsonl", b"{}\n"),
            purpose="batch",
            expires_after=setting,  # type: ignore[arg-type]
        )
    assert (caught.value.status_code, caught.value.response.content) == (400, answer)


@pytest.mark.parametrize("name", sorted(BATCH_REFUSALS))
def test_a_batch_with_a_bad_output_expires_after_is_refused(client: OpenAI, name: str) -> None:
    setting, answer = BATCH_REFUSALS[name]
    input_file = upload(client, [chat_request("a")])
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(
            input_file_id=input_file.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            output_expires_after=setting,  # type: ignore[arg-type]
        )
    assert (caught.value.status_code, caught.value.response.content) == (400, answer)


def test_a_file_without_expires_after_lives_as_its_purpose_says(client: OpenAI) -> None:
    batch_input = client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert batch_input.expires_at == batch_input.created_at + 30 * 86400
    other = client.files.create(file=("a.txt", b"hi"), purpose="user_data")
    assert other.expires_at is None


@pytest.mark.parametrize("seconds", [3600, 2592000])
def test_both_settings_take_the_bounds(seconds: int) -> None:
    for setting in (FILE_EXPIRES_AFTER, BATCH_OUTPUT_EXPIRES_AFTER):
        assert expiry_seconds("created_at", seconds, setting) == seconds


@pytest.mark.parametrize("seconds", [True, 3600.0, "3600", None])
def test_seconds_must_be_a_json_integer(seconds: Any) -> None:
    with pytest.raises(APIError) as caught:
        expiry_seconds("created_at", seconds, BATCH_OUTPUT_EXPIRES_AFTER)
    assert caught.value.param == "output_expires_after.seconds"


def test_form_fields_are_read_as_int_reads_them() -> None:
    assert [form_integer(t) for t in ("3600", " 3600 ", "+3600", "3_600")] == [3600] * 4
    assert [form_integer(t) for t in ("3600.0", "soon", "", None)] == ["3600.0", "soon", "", None]
