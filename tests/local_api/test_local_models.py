"""Tests for the local models: real-shaped, deterministic answers for every batch endpoint."""

import base64
import json
import math
import struct
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from batch_assets.local_api.local_models import (
    SUPPORTED_ENDPOINTS,
    RequestRejected,
    count_embedding_inputs,
    count_tokens,
    estimate_input_tokens,
    model_of,
    respond,
)
from tests.local_api.helpers import ids_and_rest
from tests.openapi_spec import spec_errors

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
MODERATIONS = "/v1/moderations"

MODERATION_CATEGORIES = {
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
}

SENTIMENT = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]}},
    "required": ["sentiment"],
    "additionalProperties": False,
}
ANSWER_SCHEMAS: dict[str, dict] = {
    "sentiment": SENTIMENT,
    "nested": {
        "type": "object",
        "properties": {
            "invoice": {
                "type": "object",
                "properties": {
                    "number": {"type": "string", "pattern": "^INV-[0-9]{5}$"},
                    "issued": {"type": "string", "format": "date"},
                    "lines": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "sku": {"type": "string"},
                                "qty": {"type": "integer", "minimum": 1, "maximum": 9},
                                "price": {"type": "number", "exclusiveMinimum": 0},
                            },
                            "required": ["sku", "qty", "price"],
                            "additionalProperties": False,
                        },
                        "minItems": 1,
                        "maxItems": 3,
                    },
                },
                "required": ["number", "issued", "lines"],
                "additionalProperties": False,
            },
            "currency": {"type": "string", "enum": ["EUR", "USD"]},
            "contact": {"anyOf": [{"type": "string", "format": "email"}, {"type": "null"}]},
        },
        "required": ["invoice", "currency", "contact"],
        "additionalProperties": False,
    },
    "recursive": {
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/node"}},
        "required": ["root"],
        "additionalProperties": False,
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["title", "children"],
                "additionalProperties": False,
            }
        },
    },
}


def chat_body(content: str = "Classify: the food was great.", **extra: object) -> dict:
    """Build a small chat request body."""
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": content},
        ],
        **extra,
    }


def responses_body(content: str = "Classify: the food was great.", **extra: object) -> dict:
    """Build a small responses request body."""
    return {"model": "gpt-4.1-mini", "input": content, **extra}


def completions_body(content: str = "Once upon a time", **extra: object) -> dict:
    """Build a small legacy completions request body."""
    return {"model": "gpt-3.5-turbo-instruct", "prompt": content, **extra}


def embeddings_body(content: str | list = "hello world", **extra: object) -> dict:
    """Build a small embeddings request body."""
    return {"model": "content-embedding-3-small", "input": content, **extra}


def moderations_body(content: str | list = "I like gardening.", **extra: object) -> dict:
    """Build a small moderations request body."""
    return {"input": content, **extra}


BUILDERS: dict[str, Callable[..., dict]] = {
    CHAT: chat_body,
    RESPONSES: responses_body,
    COMPLETIONS: completions_body,
    EMBEDDINGS: embeddings_body,
    MODERATIONS: moderations_body,
}


def _validate(schema: dict, value: object) -> None:
    """Validate with the reference implementation, formats included."""
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(schema, format_checker=checker).validate(value)


def _rejection(endpoint: str, body: Any) -> RequestRejected:
    """Return the rejection a body earns (failing if it is answered)."""
    with pytest.raises(RequestRejected) as caught:
        respond(endpoint, body, created=1)
    return caught.value


def _prompt_usage(endpoint: str, answer: dict) -> int:
    """Read the input-side token count of an answer (0 for moderations, which report none)."""
    usage = answer.get("usage", {})
    return usage.get("input_tokens", usage.get("prompt_tokens", 0))


def _cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors."""
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


# --- interface -------------------------------------------------------------------------------


def test_supported_endpoints_are_the_five_batch_endpoints() -> None:
    assert SUPPORTED_ENDPOINTS == (RESPONSES, CHAT, EMBEDDINGS, COMPLETIONS, MODERATIONS)


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_count_tokens_is_about_four_characters_each(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


@pytest.mark.parametrize(
    ("endpoint", "body", "model"),
    [
        (CHAT, {"model": "gpt-4o"}, "gpt-4o"),
        (CHAT, {"model": 5}, None),
        (RESPONSES, {}, None),
        (MODERATIONS, {}, "omni-moderation-latest"),
        (MODERATIONS, {"model": "text-moderation-latest"}, "text-moderation-latest"),
    ],
)
def test_model_of(endpoint: str, body: dict, model: str | None) -> None:
    assert model_of(endpoint, body) == model


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ({"input": "one"}, 1),
        ({"input": ["a", "b", "c"]}, 3),
        ({"input": [1, 2, 3, 4]}, 1),
        ({"input": [[1, 2], [3]]}, 2),
        ({}, 0),
    ],
)
def test_count_embedding_inputs(body: dict, count: int) -> None:
    assert count_embedding_inputs(body) == count


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (CHAT, {}),
        (CHAT, {"messages": "text"}),
        (CHAT, {"messages": [1, None, {"content": 5}, {"content": [{"text": 3}, "x"]}]}),
        (RESPONSES, {"input": {"odd": True}, "instructions": 7}),
        (RESPONSES, {"input": [None, 3, {"content": [{"type": "input_image"}]}]}),
        (COMPLETIONS, {"prompt": [None, {"a": 1}, [1, "x"]]}),
        (EMBEDDINGS, {"input": 42}),
        (MODERATIONS, {"input": [{"type": "image_url"}, 3]}),
        ("/v1/unknown", {"input": "x"}),
        (CHAT, "not a dict"),
    ],
)
def test_estimate_input_tokens_never_raises(endpoint: str, body: dict) -> None:
    assert estimate_input_tokens(endpoint, body) >= 0


def test_rejection_envelope_has_all_four_keys() -> None:
    rejected = _rejection(CHAT, {"model": "gpt-4o-mini"})
    assert rejected.status_code == 400
    assert rejected.envelope() == {
        "error": {
            "message": "Missing required parameter: 'messages'.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "missing_required_parameter",
        }
    }


def test_unknown_endpoint_is_a_404() -> None:
    rejected = _rejection("/v1/images/generations", {"model": "x"})
    assert rejected.status_code == 404
    assert "/v1/images/generations" in rejected.message


# --- every endpoint ----------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", SUPPORTED_ENDPOINTS)
def test_different_inputs_give_different_answers(endpoint: str) -> None:
    one = respond(endpoint, BUILDERS[endpoint]("The weather is mild today."), created=1)
    two = respond(endpoint, BUILDERS[endpoint]("Quarterly revenue grew strongly."), created=1)
    assert one != two
    if "id" in one:
        assert one["id"] != two["id"]


@pytest.mark.parametrize("endpoint", [CHAT, RESPONSES, COMPLETIONS, EMBEDDINGS])
def test_usage_grows_with_input_and_matches_the_estimate(endpoint: str) -> None:
    short = BUILDERS[endpoint]("Short text.")
    long = BUILDERS[endpoint]("A much longer text that keeps going. " * 40)
    short_tokens = _prompt_usage(endpoint, respond(endpoint, short, created=1))
    long_tokens = _prompt_usage(endpoint, respond(endpoint, long, created=1))
    assert 0 < short_tokens < long_tokens
    assert short_tokens == estimate_input_tokens(endpoint, short)
    assert long_tokens == estimate_input_tokens(endpoint, long)


def test_moderation_estimate_grows_with_input() -> None:
    short = estimate_input_tokens(MODERATIONS, moderations_body("hi"))
    long = estimate_input_tokens(MODERATIONS, moderations_body(["hello there " * 30, "again"]))
    assert 0 < short < long


def test_chat_tokens_count_content_part_lists() -> None:
    plain = chat_body("x" * 400)
    parts = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "x" * 400}]},
        ],
    }
    with_image = json.loads(json.dumps(parts))
    with_image["messages"][1]["content"].append(
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    )
    assert estimate_input_tokens(CHAT, parts) == estimate_input_tokens(CHAT, plain) > 100
    assert estimate_input_tokens(CHAT, with_image) > estimate_input_tokens(CHAT, parts)


def test_responses_tokens_count_item_lists_and_instructions() -> None:
    as_text = responses_body("y" * 400)
    as_items = responses_body(
        [{"role": "user", "content": [{"type": "input_text", "text": "y" * 400}]}]
    )
    with_instructions = responses_body("y" * 400, instructions="z" * 200)
    assert estimate_input_tokens(RESPONSES, as_items) == estimate_input_tokens(RESPONSES, as_text)
    assert estimate_input_tokens(RESPONSES, with_instructions) >= (
        estimate_input_tokens(RESPONSES, as_text) + 50
    )
    answer = respond(RESPONSES, with_instructions, created=1)
    assert answer["usage"]["input_tokens"] == estimate_input_tokens(RESPONSES, with_instructions)


SPEC_SCHEMAS = {
    CHAT: "CreateChatCompletionResponse",
    RESPONSES: "Response",
    COMPLETIONS: "CreateCompletionResponse",
    EMBEDDINGS: "CreateEmbeddingResponse",
    MODERATIONS: "CreateModerationResponse",
}
FUNCTION_PARAMETERS = {
    "type": "object",
    "properties": {"q": {"type": "string"}},
    "required": ["q"],
    "additionalProperties": False,
}
SPEC_CASES = [
    (CHAT, chat_body()),
    (CHAT, chat_body(n=3, max_completion_tokens=4)),
    (
        CHAT,
        chat_body(
            tools=[
                {"type": "function", "function": {"name": "f", "parameters": FUNCTION_PARAMETERS}}
            ],
            tool_choice="required",
        ),
    ),
    (RESPONSES, responses_body(instructions="Be brief.", metadata={"k": "v"})),
    (RESPONSES, responses_body(max_output_tokens=16, model="o4-mini")),
    (
        RESPONSES,
        responses_body(
            tools=[{"type": "function", "name": "f", "parameters": FUNCTION_PARAMETERS}],
            tool_choice="required",
            text={"format": {"type": "json_schema", "name": "s", "schema": SENTIMENT}},
        ),
    ),
    (COMPLETIONS, completions_body(["a", "b"], n=2)),
    (EMBEDDINGS, embeddings_body(["a", "b"])),
    (MODERATIONS, moderations_body(["calm", "I will kill you"])),
    (
        MODERATIONS,
        moderations_body([{"type": "image_url", "image_url": {"url": "https://e.com/a.png"}}]),
    ),
]


@pytest.mark.parametrize(("endpoint", "body"), SPEC_CASES)
def test_answers_conform_to_the_openapi_spec(endpoint: str, body: dict) -> None:
    answer = respond(endpoint, body, created=1_700_000_000)
    assert spec_errors(answer, SPEC_SCHEMAS[endpoint]) == []


def test_answers_are_deterministic_but_for_fresh_ids_and_the_time() -> None:
    time_keys = {"created", "created_at", "completed_at"}
    seen: list[str] = []
    for endpoint, body in SPEC_CASES:
        first = respond(endpoint, body, created=1_700_000_000)
        again = respond(endpoint, json.loads(json.dumps(body)), created=1_700_000_000)
        later = respond(endpoint, body, created=1_800_000_000)
        (first_ids, first_rest), (again_ids, again_rest), (later_ids, later_rest) = map(
            ids_and_rest, (first, again, later)
        )
        assert again_rest == first_rest
        assert {k: v for k, v in later_rest.items() if k not in time_keys} == {
            k: v for k, v in first_rest.items() if k not in time_keys
        }
        for key in time_keys & set(first):  # a cut response has no completed_at
            assert (first[key], later[key]) in {(1_700_000_000, 1_800_000_000), (None, None)}
        # OpenAI's embedding list carries no id; every other answer has at least one
        assert bool(first_ids) is (endpoint != EMBEDDINGS)
        seen += first_ids + again_ids + later_ids
    assert len(set(seen)) == len(seen)


# --- /v1/chat/completions ----------------------------------------------------------------------


def test_chat_completion_has_every_key_of_the_real_object() -> None:
    answer = respond(CHAT, chat_body(), created=123)
    assert set(answer) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    }
    assert answer["id"].startswith("chatcmpl-")
    assert answer["object"] == "chat.completion"
    assert answer["created"] == 123
    assert answer["model"] == "gpt-4o-mini"
    assert answer["service_tier"] == "default"
    assert answer["system_fingerprint"].startswith("fp_")
    (choice,) = answer["choices"]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": choice["message"]["content"],
            "refusal": None,
            "annotations": [],
        },
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert "the food was great" in choice["message"]["content"]
    usage = answer["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "audio_tokens": 0}
    assert usage["completion_tokens_details"] == {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }
    assert usage["completion_tokens"] == count_tokens(choice["message"]["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_chat_honours_n(n: int) -> None:
    answer = respond(CHAT, chat_body(n=n), created=1)
    assert [c["index"] for c in answer["choices"]] == list(range(n))
    contents = [c["message"]["content"] for c in answer["choices"]]
    assert answer["usage"]["completion_tokens"] == sum(map(count_tokens, contents))
    if n > 1:
        assert len(set(contents)) > 1


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
def test_chat_truncates_at_the_token_limit(key: str) -> None:
    cut = respond(CHAT, chat_body(**{key: 3}), created=1)
    (choice,) = cut["choices"]
    assert choice["finish_reason"] == "length"
    assert 0 < cut["usage"]["completion_tokens"] <= 3
    assert len(choice["message"]["content"]) <= 12
    roomy = respond(CHAT, chat_body(**{key: 500}), created=1)
    assert roomy["choices"][0]["finish_reason"] == "stop"
    full = respond(CHAT, chat_body(), created=1)["choices"][0]["message"]["content"]
    assert full.startswith(choice["message"]["content"])


def test_chat_stop_sequence_cuts_the_answer() -> None:
    full = respond(CHAT, chat_body(), created=1)["choices"][0]["message"]["content"]
    stop_word = full.split()[2]
    stopped = respond(CHAT, chat_body(stop=[stop_word]), created=1)["choices"][0]
    assert stopped["message"]["content"] == full[: full.index(stop_word)]
    assert stopped["finish_reason"] == "stop"


def test_reasoning_models_spend_reasoning_tokens() -> None:
    answer = respond(CHAT, chat_body(model="o3-mini", reasoning_effort="high"), created=1)
    details = answer["usage"]["completion_tokens_details"]
    content = answer["choices"][0]["message"]["content"]
    assert details["reasoning_tokens"] > 0
    assert answer["usage"]["completion_tokens"] == details["reasoning_tokens"] + count_tokens(
        content
    )
    starved = respond(CHAT, chat_body(model="gpt-5-mini", max_completion_tokens=20), created=1)
    assert starved["choices"][0]["message"]["content"] == ""
    assert starved["choices"][0]["finish_reason"] == "length"
    assert starved["usage"]["completion_tokens"] == 20


def test_reasoning_models_refuse_max_tokens() -> None:
    rejected = _rejection(CHAT, chat_body(model="o3", max_tokens=100))
    assert (rejected.param, rejected.code) == ("max_tokens", "unsupported_parameter")


@pytest.mark.parametrize("name", sorted(ANSWER_SCHEMAS))
def test_chat_json_schema_answers_validate(name: str) -> None:
    schema = ANSWER_SCHEMAS[name]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": True},
    }
    for index in range(10):
        body = chat_body(f"Document number {index}.", response_format=response_format, n=2)
        for choice in respond(CHAT, body, created=1)["choices"]:
            _validate(schema, json.loads(choice["message"]["content"]))


def test_structured_labels_vary_with_the_input() -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "sentiment", "schema": SENTIMENT, "strict": True},
    }
    labels = {
        json.loads(
            respond(CHAT, chat_body(f"Review {i}", response_format=response_format), created=1)[
                "choices"
            ][0]["message"]["content"]
        )["sentiment"]
        for i in range(30)
    }
    assert labels == {"positive", "negative", "neutral"}


def test_chat_json_object_mode_answers_a_json_object() -> None:
    body = chat_body("Reply in JSON: what is 2+2?", response_format={"type": "json_object"})
    content = respond(CHAT, body, created=1)["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content), dict)


def test_chat_json_object_mode_needs_the_word_json() -> None:
    rejected = _rejection(CHAT, chat_body("What is 2+2?", response_format={"type": "json_object"}))
    assert rejected.param == "messages"
    assert "json" in rejected.message


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "In context=(), 'additionalProperties' is required",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "Missing 'b'",
        ),
        (
            {
                "type": "object",
                "properties": {"inner": {"type": "object", "properties": {}}},
                "required": ["inner"],
                "additionalProperties": False,
            },
            "In context=('properties', 'inner')",
        ),
        ({"type": "array", "items": {"type": "string"}}, 'type: "object"'),
    ],
)
def test_strict_schemas_must_follow_the_structured_outputs_rules(
    schema: dict, fragment: str
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": schema, "strict": True},
    }
    rejected = _rejection(CHAT, chat_body(response_format=response_format))
    assert rejected.param == "response_format"
    assert fragment in rejected.message
    loose = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    content = respond(CHAT, chat_body(response_format=loose), created=1)["choices"][0]
    _validate(schema, json.loads(content["message"]["content"]))


def test_forced_tool_call_has_arguments_that_fit_the_parameters() -> None:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    }
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": parameters}}]
    answer = respond(CHAT, chat_body(tools=tools, tool_choice="required"), created=1)
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    _validate(parameters, json.loads(call["function"]["arguments"]))
    auto = respond(CHAT, chat_body(tools=tools), created=1)["choices"][0]
    assert auto["finish_reason"] == "stop" and "tool_calls" not in auto["message"]


REJECTIONS = [
    (CHAT, {"messages": [{"role": "user", "content": "x"}]}, "model", "missing_required_parameter"),
    (CHAT, {"model": "gpt-4o"}, "messages", "missing_required_parameter"),
    (CHAT, {"model": "gpt-4o", "messages": []}, "messages", "empty_array"),
    (CHAT, {"model": "gpt-4o", "messages": "hi"}, "messages", "invalid_type"),
    (CHAT, {"model": 4, "messages": [{"role": "user", "content": "x"}]}, "model", "invalid_type"),
    (CHAT, {"model": "m", "messages": [{"content": "x"}]}, "messages[0].role", None),
    (CHAT, {"model": "m", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", None),
    (CHAT, {"model": "m", "messages": [{"role": "user"}]}, "messages[0].content", None),
    (CHAT, chat_body(n=0), "n", "integer_below_min_value"),
    (CHAT, chat_body(n=129), "n", "integer_above_max_value"),
    (CHAT, chat_body(n="2"), "n", "invalid_type"),
    (CHAT, chat_body(max_tokens=0), "max_tokens", "integer_below_min_value"),
    (CHAT, chat_body(temperature=3), "temperature", "decimal_above_max_value"),
    (CHAT, chat_body(response_format={"type": "xml"}), "response_format.type", "invalid_value"),
    (
        CHAT,
        chat_body(response_format={"type": "json_schema"}),
        "response_format.json_schema",
        "missing_required_parameter",
    ),
    (
        CHAT,
        chat_body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
        "missing_required_parameter",
    ),
    (
        CHAT,
        chat_body(response_format={"type": "json_schema", "json_schema": {"name": "has space"}}),
        "response_format.json_schema.name",
        "invalid_value",
    ),
    (RESPONSES, {"input": "x"}, "model", "missing_required_parameter"),
    (RESPONSES, {"model": "gpt-4.1"}, "input", "missing_required_parameter"),
    (RESPONSES, {"model": "gpt-4.1", "input": 5}, "input", "invalid_type"),
    (RESPONSES, responses_body(max_output_tokens=8), "max_output_tokens", None),
    (
        RESPONSES,
        responses_body(text={"format": {"type": "json_schema", "schema": SENTIMENT}}),
        "text.format.name",
        "missing_required_parameter",
    ),
    (
        RESPONSES,
        responses_body(text={"format": {"type": "json_schema", "name": "s"}}),
        "text.format.schema",
        "missing_required_parameter",
    ),
    (
        RESPONSES,
        responses_body(
            text={
                "format": {
                    "type": "json_schema",
                    "name": "s",
                    "strict": True,
                    "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                }
            }
        ),
        "text.format.schema",
        "invalid_json_schema",
    ),
    (RESPONSES, responses_body(foo=1), "foo", "unknown_parameter"),
    (COMPLETIONS, {"model": "gpt-3.5-turbo-instruct"}, "prompt", "missing_required_parameter"),
    (COMPLETIONS, {"prompt": "x"}, "model", "missing_required_parameter"),
    (COMPLETIONS, completions_body([]), "prompt", "empty_array"),
    (COMPLETIONS, completions_body({"a": 1}), "prompt", "invalid_type"),
    (EMBEDDINGS, {"model": "text-embedding-3-small"}, "input", "missing_required_parameter"),
    (EMBEDDINGS, {"input": "x"}, "model", "missing_required_parameter"),
    (EMBEDDINGS, embeddings_body(""), "input", "invalid_value"),
    (EMBEDDINGS, embeddings_body(["x"] * 2049), "input", "array_above_max_length"),
    (EMBEDDINGS, embeddings_body(dimensions=0), "dimensions", "integer_below_min_value"),
    (EMBEDDINGS, embeddings_body(dimensions=1537), "dimensions", "invalid_value"),
    (
        EMBEDDINGS,
        embeddings_body(model="text-embedding-ada-002", dimensions=256),
        "dimensions",
        None,
    ),
    (EMBEDDINGS, embeddings_body(encoding_format="int8"), "encoding_format", "invalid_value"),
    (MODERATIONS, {"model": "omni-moderation-latest"}, "input", "missing_required_parameter"),
    (MODERATIONS, moderations_body([]), "input", "empty_array"),
    (MODERATIONS, moderations_body(7), "input", "invalid_type"),
]


@pytest.mark.parametrize(("endpoint", "body", "param", "code"), REJECTIONS)
def test_bad_bodies_are_rejected_naming_the_field(
    endpoint: str, body: dict, param: str, code: str | None
) -> None:
    rejected = _rejection(endpoint, body)
    assert rejected.status_code == 400
    assert rejected.type == "invalid_request_error"
    assert rejected.param == param
    if code is not None:
        assert rejected.code == code
    assert rejected.message


def test_unrecognized_chat_arguments_are_rejected() -> None:
    rejected = _rejection(CHAT, chat_body(max_token=10))
    assert rejected.message == "Unrecognized request argument supplied: max_token"


def test_non_object_body_is_rejected() -> None:
    assert _rejection(CHAT, ["not", "an", "object"]).code == "invalid_type"


def test_embedding_inputs_over_the_context_window_are_rejected() -> None:
    rejected = _rejection(EMBEDDINGS, embeddings_body("word " * 8000))
    assert "maximum context length is 8192 tokens" in rejected.message


# --- /v1/responses -----------------------------------------------------------------------------


def test_response_object_has_the_real_shape() -> None:
    answer = respond(RESPONSES, responses_body(instructions="Be brief."), created=77)
    required = {
        "id",
        "object",
        "created_at",
        "status",
        "error",
        "incomplete_details",
        "instructions",
        "max_output_tokens",
        "model",
        "output",
        "parallel_tool_calls",
        "metadata",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_p",
        "usage",
        "reasoning",
        "truncation",
        "store",
        "service_tier",
    }
    assert required <= set(answer)
    assert answer["id"].startswith("resp_")
    assert (answer["object"], answer["status"], answer["created_at"]) == (
        "response",
        "completed",
        77,
    )
    assert answer["error"] is None and answer["incomplete_details"] is None
    assert answer["instructions"] == "Be brief."
    assert answer["text"]["format"] == {"type": "text"}
    assert (answer["tools"], answer["tool_choice"], answer["parallel_tool_calls"]) == (
        [],
        "auto",
        True,
    )
    assert answer["metadata"] == {}
    (item,) = answer["output"]
    assert item["type"] == "message" and item["id"].startswith("msg_")
    assert (item["status"], item["role"]) == ("completed", "assistant")
    (part,) = item["content"]
    assert part["type"] == "output_text" and part["annotations"] == []
    assert "the food was great" in part["text"]
    usage = answer["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["output_tokens"] == count_tokens(part["text"])
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_response_echoes_request_settings() -> None:
    body = responses_body(
        temperature=0.2, top_p=0.5, metadata={"job": "a"}, max_output_tokens=500, store=False
    )
    answer = respond(RESPONSES, body, created=1)
    assert (answer["temperature"], answer["top_p"]) == (0.2, 0.5)
    assert answer["metadata"] == {"job": "a"}
    assert answer["max_output_tokens"] == 500
    assert answer["store"] is False


@pytest.mark.parametrize("name", sorted(ANSWER_SCHEMAS))
def test_responses_json_schema_output_validates(name: str) -> None:
    schema = ANSWER_SCHEMAS[name]
    text = {"format": {"type": "json_schema", "name": name, "schema": schema, "strict": True}}
    for index in range(10):
        answer = respond(RESPONSES, responses_body(f"Item {index}", text=text), created=1)
        assert answer["text"]["format"]["name"] == name
        _validate(schema, json.loads(answer["output"][0]["content"][0]["text"]))


def test_responses_item_list_input_answers_the_last_user_message() -> None:
    body = responses_body(
        [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "input_text", "text": "second question"}]},
        ]
    )
    text = respond(RESPONSES, body, created=1)["output"][0]["content"][0]["text"]
    assert "second question" in text


def test_responses_max_output_tokens_makes_an_incomplete_response() -> None:
    answer = respond(
        RESPONSES, responses_body("internationalization " * 20, max_output_tokens=16), created=1
    )
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}
    assert answer["output"][0]["status"] == "incomplete"
    assert answer["usage"]["output_tokens"] <= 16


def test_responses_forced_function_call() -> None:
    tool = {
        "type": "function",
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string"}},
            "required": ["q"],
            "additionalProperties": False,
        },
    }
    answer = respond(RESPONSES, responses_body(tools=[tool], tool_choice="required"), created=1)
    (item,) = answer["output"]
    assert item["type"] == "function_call" and item["name"] == "lookup"
    assert item["call_id"].startswith("call_")
    assert isinstance(json.loads(item["arguments"])["q"], str)


# --- /v1/completions ---------------------------------------------------------------------------


def test_text_completion_has_the_real_shape() -> None:
    answer = respond(COMPLETIONS, completions_body(max_tokens=100), created=5)
    assert set(answer) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
    }
    assert answer["id"].startswith("cmpl-") and answer["object"] == "text_completion"
    (choice,) = answer["choices"]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
    assert (choice["logprobs"], choice["finish_reason"]) == (None, "stop")
    assert set(answer["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_completions_give_one_choice_per_prompt_and_n() -> None:
    answer = respond(COMPLETIONS, completions_body(["one", "two", "three"], n=2), created=1)
    assert [c["index"] for c in answer["choices"]] == list(range(6))
    assert "one" in answer["choices"][0]["text"] and "three" in answer["choices"][5]["text"]


def test_completions_default_to_sixteen_tokens() -> None:
    answer = respond(COMPLETIONS, completions_body("word " * 30), created=1)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 16


def test_completions_echo_prepends_the_prompt() -> None:
    answer = respond(COMPLETIONS, completions_body("Hello", echo=True), created=1)
    assert answer["choices"][0]["text"].startswith("Hello ")


# --- /v1/embeddings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("text-embedding-3-small", 1536),
        ("text-embedding-3-large", 3072),
        ("text-embedding-ada-002", 1536),
    ],
)
def test_embedding_sizes_follow_the_model(model: str, size: int) -> None:
    answer = respond(EMBEDDINGS, embeddings_body(["a", "b"], model=model), created=1)
    assert set(answer) == {"object", "data", "model", "usage"}
    assert answer["object"] == "list" and answer["model"] == model
    assert [d["index"] for d in answer["data"]] == [0, 1]
    for item in answer["data"]:
        assert item["object"] == "embedding"
        assert len(item["embedding"]) == size
        assert math.isclose(math.hypot(*item["embedding"]), 1.0, abs_tol=1e-5)
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["total_tokens"] == 2


def test_embedding_dimensions_are_a_renormalised_prefix() -> None:
    full = respond(EMBEDDINGS, embeddings_body(model="text-embedding-3-large"), created=1)
    short = respond(
        EMBEDDINGS, embeddings_body(model="text-embedding-3-large", dimensions=256), created=1
    )
    vector = short["data"][0]["embedding"]
    assert len(vector) == 256
    assert math.isclose(math.hypot(*vector), 1.0, abs_tol=1e-5)
    assert _cosine(vector, full["data"][0]["embedding"][:256]) > 0.9999


def test_same_text_same_vector_across_calls_and_positions() -> None:
    alone = respond(EMBEDDINGS, embeddings_body("shared text"), created=1)["data"][0]["embedding"]
    batch = respond(EMBEDDINGS, embeddings_body(["other", "shared text"]), created=2)["data"]
    assert batch[1]["embedding"] == alone
    assert batch[0]["embedding"] != alone


def test_embeddings_reflect_shared_words() -> None:
    data = respond(
        EMBEDDINGS,
        embeddings_body(
            [
                "the cat sat on the mat",
                "the cat sat on the mat!",
                "quarterly revenue exceeded forecasts",
            ]
        ),
        created=1,
    )["data"]
    vectors = [d["embedding"] for d in data]
    assert _cosine(vectors[0], vectors[1]) > 0.8
    assert abs(_cosine(vectors[0], vectors[2])) < 0.3


def test_base64_embeddings_are_little_endian_float32_of_the_same_vector() -> None:
    floats = respond(EMBEDDINGS, embeddings_body(["x", "y"]), created=1)["data"]
    encoded = respond(EMBEDDINGS, embeddings_body(["x", "y"], encoding_format="base64"), created=1)
    for as_float, as_b64 in zip(floats, encoded["data"], strict=True):
        raw = base64.b64decode(as_b64["embedding"])
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == as_float["embedding"]


def test_token_array_inputs_are_embedded_and_counted() -> None:
    answer = respond(EMBEDDINGS, embeddings_body([[1, 2, 3], [4, 5]]), created=1)
    assert len(answer["data"]) == count_embedding_inputs(embeddings_body([[1, 2, 3], [4, 5]]))
    assert answer["usage"]["prompt_tokens"] == 5


# --- /v1/moderations ---------------------------------------------------------------------------


def test_moderation_has_the_real_shape_and_passes_ordinary_text() -> None:
    answer = respond(MODERATIONS, moderations_body(), created=1)
    assert set(answer) == {"id", "model", "results"}
    assert answer["id"].startswith("modr-")
    assert answer["model"] == "omni-moderation-latest"
    (result,) = answer["results"]
    assert set(result) == {
        "flagged",
        "categories",
        "category_scores",
        "category_applied_input_types",
    }
    assert result["flagged"] is False
    for key in ("categories", "category_scores", "category_applied_input_types"):
        assert set(result[key]) == MODERATION_CATEGORIES
    assert not any(result["categories"].values())
    assert all(0 <= s < 0.01 for s in result["category_scores"].values())
    assert all(t == ["text"] for t in result["category_applied_input_types"].values())


def test_moderation_flags_violent_text_per_input() -> None:
    answer = respond(
        MODERATIONS, moderations_body(["Lovely weather.", "I will kill you."]), created=1
    )
    calm, violent = answer["results"]
    assert calm["flagged"] is False
    assert violent["flagged"] is True
    assert violent["categories"]["violence"] is True
    assert violent["category_scores"]["violence"] > 0.5
    assert violent["categories"]["sexual/minors"] is False


def test_moderation_of_multimodal_parts_is_one_result_with_image_types() -> None:
    parts = [
        {"type": "text", "text": "a photo"},
        {"type": "image_url", "image_url": {"url": "https://example.com/p.png"}},
    ]
    answer = respond(MODERATIONS, moderations_body(parts), created=1)
    (result,) = answer["results"]
    applied = result["category_applied_input_types"]
    assert applied["violence"] == ["text", "image"]
    assert applied["hate"] == ["text"]
