"""Answers to a JSON-schema `response_format` as typed columns, one per property of the schema.

Strings, integers, floats, booleans, lists and nested objects get their polars types, string
enums become polars Enums. An answer fits when it decodes to the schema's types, its enum
values are among the schema's, and its required properties that may not be null are there.
An answer that does not fit keeps its raw text in `answer`, gets nulls in the typed columns
and false in `answer_matches_schema`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from batch_assets.core.output_parsing import (
    ANSWERED_STATUS,
    JSON_ANSWER_COLUMN,
    decode_json_answers,
    json_schema_to_dtype,
)

MATCHES_COLUMN = "answer_matches_schema"


def typed_columns(schema: Mapping[str, Any]) -> list[str]:
    """The columns the answers to `schema` fill: one per property of its top-level object."""
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, Mapping) or not properties:
        raise ValueError(
            "a response_format schema for typed columns must be an object with properties "
            "(OpenAI's structured outputs require one at the top level)"
        )
    return list(properties)


def _nullable(node: Mapping[str, Any]) -> bool:
    """Whether a property's schema allows null."""
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(option.get("type") == "null" for option in node.get("anyOf") or [])


def typed_answers(frame: pl.DataFrame, schema: Mapping[str, Any]) -> pl.DataFrame:
    """`frame` with its `answer`s decoded into typed columns and `answer_matches_schema`:
    true where an answered request's answer fits the schema, false where it does not, null
    where the request was not answered."""
    columns = typed_columns(schema)
    loose = json_schema_to_dtype(schema)
    decoded = decode_json_answers(frame, dtype=loose)[JSON_ANSWER_COLUMN]
    typed = decoded.cast(json_schema_to_dtype(schema, enums=True), strict=False)
    properties = schema["properties"]
    required = [
        name for name in schema.get("required") or [] if not _nullable(properties.get(name, {}))
    ]
    fits = decoded.is_not_null() & typed.cast(loose).eq_missing(decoded)
    for name in required:
        fits = fits & typed.struct.field(name).is_not_null()
    answered = frame["status_code"] == ANSWERED_STATUS
    matches = pl.select(
        pl.when(answered).then(fits.fill_null(False)).otherwise(None).alias(MATCHES_COLUMN)
    ).to_series()
    values = typed.struct.unnest()
    return frame.with_columns(
        *[pl.when(matches).then(values[name]).otherwise(None).alias(name) for name in columns],
        matches,
    )
