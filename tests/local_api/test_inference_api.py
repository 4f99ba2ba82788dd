"""The batch endpoints, served synchronously and inside batches, in the spec's shapes."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI

from tests.local_api.helpers import ids_and_rest, read_lines, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.openapi_spec import spec_errors

SENTIMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "topics": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sentiment", "confidence", "topics"],
    "additionalProperties": False,
}

ENDPOINT_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "/v1/chat/completions": (
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]},
        "CreateChatCompletionResponse",
    ),
    "/v1/responses": (
        {"model": "gpt-4o-mini", "input": "Hello there", "instructions": "Be brief."},
        "Response",
    ),
    "/v1/completions": (
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time"},
        "CreateCompletionResponse",
    ),
    "/v1/embeddings": (
        {"model": "text-embedding-3-small", "input": ["one", "two"], "dimensions": 8},
        "CreateEmbeddingResponse",
    ),
    "/v1/moderations": (
        {"model": "omni-moderation-latest", "input": "A kind sentence."},
        "CreateModerationResponse",
    ),
}


def assert_same_answer_with_fresh_ids(endpoint: str, answers: list[dict[str, Any]]) -> None:
    """Answers to one body are equal but for their time and ids, and no two share an id."""
    split = [ids_and_rest(answer) for answer in answers]
    for _, rest in split:
        for timestamp in ("created", "created_at", "completed_at"):
            rest.pop(timestamp, None)
    assert all(rest == split[0][1] for _, rest in split)
    ids = [object_id for found, _ in split for object_id in found]
    # OpenAI's embedding list carries no id
    assert len(ids) >= (0 if endpoint == "/v1/embeddings" else len(answers))
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("endpoint", list(ENDPOINT_CASES))
def test_sync_endpoint_answers_in_the_spec_shape(client: OpenAI, endpoint: str) -> None:
    body, schema = ENDPOINT_CASES[endpoint]
    path = endpoint.removeprefix("/v1")
    response = client.post(path, body=body, cast_to=object)
    assert spec_errors(response, schema) == []
    again = client.post(path, body=body, cast_to=object)
    assert_same_answer_with_fresh_ids(endpoint, [response, again])


@pytest.mark.parametrize("endpoint", list(ENDPOINT_CASES))
def test_batch_lines_of_each_endpoint_conform(client: OpenAI, endpoint: str) -> None:
    body, schema = ENDPOINT_CASES[endpoint]
    lines = [
        {"custom_id": f"c{i}", "method": "POST", "url": endpoint, "body": body} for i in range(3)
    ]
    done = wait_until_done(client, submit(client, lines, endpoint=endpoint).id)

    assert done.status == "completed"
    outputs = read_lines(client, done.output_file_id)
    assert len(outputs) == 3
    for line in outputs:
        assert spec_errors(line, "BatchOutputLine") == []
        assert spec_errors(line["response"]["body"], schema) == []
    assert len({line["response"]["request_id"] for line in outputs}) == 3
    assert_same_answer_with_fresh_ids(endpoint, [line["response"]["body"] for line in outputs])


def test_error_lines_conform_to_the_error_line_schema(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(seconds_per_request=0.05)
    body, _ = ENDPOINT_CASES["/v1/chat/completions"]
    lines = [
        {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        for i in range(40)
    ]
    lines[0]["body"] = {"model": "gpt-4o-mini"}
    batch = submit(client, lines)
    wait_for(lambda: client.batches.retrieve(batch.id).request_counts.failed == 1)
    client.batches.cancel(batch.id)
    done = wait_until_done(client, batch.id)
    errors = read_lines(client, done.error_file_id)
    shapes = {line["response"] is None for line in errors}
    assert shapes == {True, False}
    for line in errors:
        assert spec_errors(line, "BatchErrorLine") == []


def test_sdk_typed_calls_work(client: OpenAI) -> None:
    chat = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.prompt_tokens > 0
    embedding = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(embedding.data[0].embedding) == 1536
    response = client.responses.create(model="gpt-4o-mini", input="Say hi")
    assert response.output_text
    moderation = client.moderations.create(input="hello")
    assert moderation.results[0].flagged is False


def test_json_schema_response_format_gets_json_that_fits(client: OpenAI) -> None:
    labels = set()
    for text in ["I love it", "Terrible product", "It is fine", "Broke after a day", "Great!"]:
        chat = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": text}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "review", "schema": SENTIMENT_SCHEMA, "strict": True},
            },
        )
        answer = json.loads(chat.choices[0].message.content or "")
        jsonschema.validate(answer, SENTIMENT_SCHEMA)
        labels.add(answer["sentiment"])
    assert len(labels) > 1


def test_usage_grows_with_the_input(client: OpenAI) -> None:
    short = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    long = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi " * 500}]
    )
    assert short.usage is not None and long.usage is not None
    assert long.usage.prompt_tokens > short.usage.prompt_tokens


def test_bad_body_is_400_naming_the_field(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert caught.value.body["param"] == "messages"
    assert spec_errors({"error": caught.value.body}, "ErrorResponse") == []
