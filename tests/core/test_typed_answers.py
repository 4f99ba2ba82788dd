"""Answers to a JSON-schema response_format as typed columns, and what does not fit."""

from __future__ import annotations

import json
from typing import Any, Literal

import polars as pl
import pydantic
import pytest

from batch_assets.core.request_template import RequestTemplate, TemplateError
from batch_assets.core.results_join import check_typed_columns, result_columns
from batch_assets.core.typed_answers import MATCHES_COLUMN, typed_answers, typed_columns

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "topics": {"type": "array", "items": {"type": "string"}},
        "score": {"type": "number"},
        "count": {"type": "integer"},
        "urgent": {"type": "boolean"},
        "author": {"type": "object", "properties": {"name": {"type": "string"}}},
        "note": {"type": ["string", "null"]},
    },
    "required": ["sentiment", "topics", "score", "count", "urgent", "author", "note"],
    "additionalProperties": False,
}
GOOD = {
    "sentiment": "positive",
    "topics": ["tent", "zip"],
    "score": 0.5,
    "count": 3,
    "urgent": True,
    "author": {"name": "Ana"},
    "note": None,
}


def answers(*rows: tuple[int | None, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "custom_id": [str(i) for i in range(len(rows))],
            "status_code": [status for status, _ in rows],
            "answer": [answer for _, answer in rows],
        },
        schema={"custom_id": pl.String, "status_code": pl.Int32, "answer": pl.String},
    )


def test_each_property_becomes_a_typed_column() -> None:
    typed = typed_answers(answers((200, json.dumps(GOOD))), SCHEMA)

    assert typed.schema["sentiment"] == pl.Enum(["positive", "neutral", "negative"])
    assert typed.schema["topics"] == pl.List(pl.String)
    assert typed.schema["score"] == pl.Float64 and typed.schema["count"] == pl.Int64
    assert typed.schema["urgent"] == pl.Boolean
    assert typed.schema["author"] == pl.Struct({"name": pl.String})
    assert typed.select(typed_columns(SCHEMA)).row(0, named=True) == GOOD
    assert typed[MATCHES_COLUMN].to_list() == [True]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (json.dumps({**GOOD, "sentiment": "furious"}), "a value outside the enum"),
        (json.dumps({**GOOD, "count": "three"}), "a string for an integer"),
        (json.dumps({key: v for key, v in GOOD.items() if key != "topics"}), "a required key"),
        (json.dumps(GOOD)[:40], "an answer cut short"),
        ("not json", "no JSON at all"),
        ("[]", "an array for an object"),
    ],
)
def test_an_answer_that_does_not_fit_keeps_its_text_and_is_marked(answer: str, why: str) -> None:
    typed = typed_answers(answers((200, json.dumps(GOOD)), (200, answer)), SCHEMA)

    assert typed[MATCHES_COLUMN].to_list() == [True, False], why
    assert typed["answer"][1] == answer
    assert all(typed[name][1] is None for name in typed_columns(SCHEMA)), why


def test_a_nullable_required_property_may_be_null_and_unanswered_rows_are_null() -> None:
    typed = typed_answers(answers((200, json.dumps(GOOD)), (500, None), (None, None)), SCHEMA)

    assert typed[MATCHES_COLUMN].to_list() == [True, None, None]
    assert typed["note"].to_list() == [None, None, None]


def test_a_pydantic_model_is_the_strict_schema_the_sdk_makes() -> None:
    class Label(pydantic.BaseModel):
        sentiment: Literal["positive", "negative"]
        topics: list[str]

    template = RequestTemplate(
        endpoint="/v1/chat/completions", model="m", user_template="{text}", response_model=Label
    )

    assert template.response_format is not None
    assert template.response_format["additionalProperties"] is False
    assert template.response_format["required"] == ["sentiment", "topics"]
    assert template.response_format_name == "Label"
    assert result_columns(template)[-3:] == ["sentiment", "topics", MATCHES_COLUMN]
    typed = typed_answers(
        answers((200, '{"sentiment": "negative", "topics": []}')), dict(template.response_format)
    )
    assert typed.schema["sentiment"] == pl.Enum(["positive", "negative"])
    with pytest.raises(TemplateError, match="not both"):
        RequestTemplate(
            endpoint="/v1/chat/completions",
            model="m",
            user_template="{text}",
            response_model=Label,
            response_format=SCHEMA,
        )


def test_schemas_that_cannot_give_typed_columns_are_refused_naming_why() -> None:
    def template(schema: dict[str, Any]) -> RequestTemplate:
        return RequestTemplate(
            endpoint="/v1/chat/completions", model="m", user_template="{t}", response_format=schema
        )

    with pytest.raises(ValueError, match="must be an object with properties"):
        check_typed_columns(template({"type": "array", "items": {"type": "string"}}))
    clashing = {"type": "object", "properties": {"answer": {"type": "string"}}}
    with pytest.raises(ValueError, match=r"properties 'answer' are named like columns"):
        check_typed_columns(template(clashing))
