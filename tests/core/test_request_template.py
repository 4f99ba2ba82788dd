"""Tests for request templates: vectorized lines against a json.dumps reference."""

from __future__ import annotations

import json
import random
from typing import Any

import polars as pl
import pytest

from batch_assets.core.request_template import (
    TEMPLATE_ENDPOINTS,
    RequestTemplate,
    TemplateError,
    render_request_lines,
    render_requests,
)
from batch_assets.core.request_validation import validate_request_lines
from tests.openapi_spec import spec_errors

NASTY = [
    'say "hi"',
    "back\\slash \\n not a newline",
    "real\nnewline\r\nand\ttab",
    "".join(chr(i) for i in range(32)) + "\x7f",
    "日本語 café 😀 \U0010ffff",
    "\u2028\u2029 line separators",
    "",
    "{not a placeholder} {{",
    "</script> & <b>",
    "x" * 5000,
]
SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["pos", "neg"]},
        "tags": {
            "type": "array",
            "items": {"type": "object", "properties": {"t": {"type": "string"}}},
        },
        "score": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    },
    "required": ["label", "tags", "score"],
    "additionalProperties": False,
}


def reference_lines(df: pl.DataFrame, template: RequestTemplate) -> list[dict[str, Any]]:
    """The obvious slow way: a Python loop building dicts (and json.dumps round trip)."""
    columns = [template.custom_id_column, *template.placeholders()]
    texts = df.select(pl.col(name).cast(pl.String) for name in columns)
    out = []
    for row in texts.iter_rows(named=True):
        text = template.render_text(row)
        line = json.dumps(template.request(row[template.custom_id_column], text))
        out.append(json.loads(line))
    return out


def template_for(endpoint: str, **changes: Any) -> RequestTemplate:
    settings: dict[str, Any] = {
        "endpoint": endpoint,
        "model": "gpt-4o-mini",
        "user_template": "Review {{{text}}} by {author}: {text}",
        "custom_id_column": "id",
    }
    if endpoint in ("/v1/chat/completions", "/v1/responses"):
        settings |= {
            "system_prompt": 'You are "careful" {not a column}\n',
            "params": {"temperature": 0.2, "max_tokens": 64, "metadata": {"k": ["v", 1, None]}},
            "response_format": SCHEMA,
        }
    return RequestTemplate(**(settings | changes))


def nasty_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"row-{i}" for i in range(len(NASTY))],
            "text": NASTY,
            "author": list(reversed(NASTY)),
            "unused": [[1]] * len(NASTY),
        }
    )


@pytest.mark.parametrize("endpoint", TEMPLATE_ENDPOINTS)
def test_lines_equal_the_reference(endpoint: str) -> None:
    df = nasty_frame()
    template = template_for(endpoint)
    lines = render_request_lines(df, template)
    assert lines.len() == df.height
    assert all("\n" not in line for line in lines)
    assert [json.loads(line) for line in lines] == reference_lines(df, template)


@pytest.mark.parametrize("seed", range(5))
def test_random_strings_equal_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    pool = [chr(c) for c in range(0, 0x250)] + ["😀", "\u2028", "\ufeff", "\U0001f9ea", "日"]
    texts = ["".join(rng.choice(pool) for _ in range(rng.randrange(60))) for _ in range(300)]
    df = pl.DataFrame({"id": [f"{i}{t[:3]}" for i, t in enumerate(texts)], "text": texts})
    df = df.with_columns(author=pl.col("text").reverse())
    for endpoint in TEMPLATE_ENDPOINTS:
        template = template_for(endpoint)
        lines = render_request_lines(df, template)
        assert [json.loads(line) for line in lines] == reference_lines(df, template)


@pytest.mark.parametrize("needs_escape", ['say "hi"', "back\\slash", "new\nline", "\x1f"])
def test_a_character_to_escape_far_down_a_column_is_escaped(needs_escape: str) -> None:
    rows = 1500  # past the rows looked at first
    clean = [f"row {i}" for i in range(rows)]
    texts = [*clean[:1200], needs_escape, *clean[1201:]]
    df = pl.DataFrame({"id": clean, "text": texts, "author": list(reversed(texts))})
    template = template_for("/v1/chat/completions")
    lines = render_request_lines(df, template)
    assert [json.loads(line) for line in lines] == reference_lines(df, template)
    clean_ids = pl.DataFrame({"id": texts, "text": clean, "author": clean})
    lines = render_request_lines(clean_ids, template)
    assert [json.loads(line) for line in lines] == reference_lines(clean_ids, template)


def test_chat_body_layout() -> None:
    df = pl.DataFrame({"id": ["a"], "text": ["t"], "author": ["me"]})
    body = json.loads(render_request_lines(df, template_for("/v1/chat/completions"))[0])["body"]
    assert body["messages"] == [
        {"role": "system", "content": 'You are "careful" {not a column}\n'},
        {"role": "user", "content": "Review {t} by me: t"},
    ]
    assert body["temperature"] == 0.2
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA, "strict": True},
    }


def test_responses_body_layout() -> None:
    df = pl.DataFrame({"id": ["a"], "text": ["t"], "author": ["me"]})
    template = template_for("/v1/responses", params={"text": {"verbosity": "low"}})
    line = json.loads(render_request_lines(df, template)[0])
    assert line["url"] == "/v1/responses"
    assert line["body"]["input"] == "Review {t} by me: t"
    assert line["body"]["instructions"] == 'You are "careful" {not a column}\n'
    assert line["body"]["text"] == {
        "verbosity": "low",
        "format": {"type": "json_schema", "name": "response", "schema": SCHEMA, "strict": True},
    }


def test_embeddings_body_layout() -> None:
    df = pl.DataFrame({"id": ["a"], "text": ["t"], "author": ["me"]})
    line = json.loads(render_request_lines(df, template_for("/v1/embeddings"))[0])
    assert line == {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "gpt-4o-mini", "input": "Review {t} by me: t"},
    }


def test_rendered_lines_pass_validation_and_the_line_schema() -> None:
    for endpoint in TEMPLATE_ENDPOINTS:
        lines = render_request_lines(nasty_frame(), template_for(endpoint))
        assert validate_request_lines(lines, endpoint=endpoint).n_requests == len(NASTY)
        for line in lines:
            assert spec_errors(json.loads(line), "BatchRequestInput") == []


def test_non_string_columns_are_cast() -> None:
    df = pl.DataFrame({"id": [7, 8], "n": [1.5, None], "flag": [True, False]})
    template = RequestTemplate(
        endpoint="/v1/embeddings",
        model="m",
        user_template="{n}|{flag}",
        custom_id_column="id",
        null_as_empty=True,
    )
    frame = render_requests(df, template)
    assert frame["custom_id"].to_list() == ["7", "8"]
    assert [json.loads(x)["body"]["input"] for x in frame["request"]] == ["1.5|true", "|false"]


def test_missing_column_is_named_with_the_available_ones() -> None:
    df = pl.DataFrame({"id": ["a"], "text": ["t"]})
    with pytest.raises(TemplateError) as caught:
        render_requests(df, template_for("/v1/embeddings"))
    assert "'author'" in str(caught.value)
    assert "available columns: 'id', 'text'" in str(caught.value)
    with pytest.raises(TemplateError, match="custom_id_column names column 'key'"):
        render_requests(df, template_for("/v1/embeddings", custom_id_column="key"))


def test_null_value_names_row_and_column() -> None:
    df = pl.DataFrame({"id": ["a", "b", "c"], "text": ["x", "y", "z"], "author": ["p", None, "q"]})
    with pytest.raises(TemplateError) as caught:
        render_requests(df, template_for("/v1/embeddings"))
    assert "column 'author' is null at row 1" in str(caught.value)
    assert "'b'" in str(caught.value)
    template = template_for("/v1/embeddings", null_as_empty=True)
    inputs = [json.loads(x)["body"]["input"] for x in render_request_lines(df, template)]
    assert inputs[1] == "Review {y} by : y"


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (["a", None, "c"], "is null at row 1"),
        (["a", "", "c"], "is empty at row 1"),
        (["a", "b", "a"], "'a' more than once (rows 0 and 2)"),
    ],
)
def test_custom_ids_must_be_present_and_unique(ids: list[str | None], words: str) -> None:
    df = pl.DataFrame({"id": ids, "text": ["x"] * 3, "author": ["y"] * 3})
    with pytest.raises(TemplateError, match=words.replace("(", r"\(").replace(")", r"\)")):
        render_requests(df, template_for("/v1/embeddings"))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"endpoint": "/v1/moderations"}, "templates support"),
        ({"model": ""}, "model must be"),
        ({"user_template": "{text"}, "not valid"),
        ({"user_template": "{}"}, "empty placeholder"),
        ({"user_template": "{text:>9}"}, "format spec"),
        ({"user_template": "{text!r}"}, "format spec"),
        ({"params": {"model": "other"}}, "params may not set model"),
        ({"params": {"messages": []}}, "params may not set messages"),
        ({"params": {"response_format": {}}}, "response_format"),
        ({"params": {"t": float("nan")}}, "field 'body.t': nan is not a JSON number"),
        ({"params": {"t": {1, 2}}}, "must be JSON"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "JSON schema itself"),
    ],
)
def test_bad_templates(changes: dict[str, Any], words: str) -> None:
    endpoint = changes.pop("endpoint", "/v1/chat/completions")
    with pytest.raises(TemplateError, match=words):
        template_for(endpoint, **changes)


@pytest.mark.parametrize("endpoint", ["/v1/embeddings", "/v1/completions"])
def test_system_prompt_and_response_format_need_a_chat_endpoint(endpoint: str) -> None:
    with pytest.raises(TemplateError, match="system_prompt"):
        template_for(endpoint, system_prompt="x")
    with pytest.raises(TemplateError, match="response_format"):
        template_for(endpoint, response_format=SCHEMA)


def test_responses_params_may_not_set_text_format() -> None:
    with pytest.raises(TemplateError, match=r"text\.format"):
        template_for("/v1/responses", params={"text": {"format": {"type": "text"}}})


def test_placeholders_in_order_without_repeats() -> None:
    template = template_for("/v1/embeddings", user_template="{b} {a} {b} {{c}}")
    assert template.placeholders() == ("b", "a")


def test_empty_frame_renders_no_lines() -> None:
    df = pl.DataFrame(schema={"id": pl.String, "text": pl.String, "author": pl.String})
    assert render_request_lines(df, template_for("/v1/embeddings")).len() == 0
