"""Parse Batch API output and error files into typed polars frames.

Both files hold lines `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}`; one schema reads them all, whatever the endpoint, so a frame mixes endpoints freely.

Columns: `answer` is the text (chat: choices[0].message.content; responses: every output_text
of every output message, joined; completions: choices[0].text); `embedding` is data[0] of an
embeddings response; `finish_reason` is choices[0].finish_reason, or for /v1/responses
incomplete_details.reason, else the response status; token counts read both the chat names
(prompt_tokens, completion_tokens) and the responses names (input_tokens, output_tokens);
`error_code` and `error_message` come from the line's `error` (batch_expired, ...) or, for an
HTTP error, from the response body's error envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

_CACHED = pl.Struct({"cached_tokens": pl.Int64})
_REASONING = pl.Struct({"reasoning_tokens": pl.Int64})
_USAGE = pl.Struct(
    {
        "prompt_tokens": pl.Int64,
        "completion_tokens": pl.Int64,
        "input_tokens": pl.Int64,
        "output_tokens": pl.Int64,
        "total_tokens": pl.Int64,
        "prompt_tokens_details": _CACHED,
        "input_tokens_details": _CACHED,
        "completion_tokens_details": _REASONING,
        "output_tokens_details": _REASONING,
    }
)
_CONTENT = pl.Struct({"type": pl.String, "text": pl.String, "refusal": pl.String})
_BODY = pl.Struct(
    {
        "model": pl.String,
        "status": pl.String,
        "incomplete_details": pl.Struct({"reason": pl.String}),
        "choices": pl.List(
            pl.Struct(
                {
                    "finish_reason": pl.String,
                    "text": pl.String,
                    "message": pl.Struct({"content": pl.String, "refusal": pl.String}),
                }
            )
        ),
        "output": pl.List(pl.Struct({"type": pl.String, "content": pl.List(_CONTENT)})),
        "data": pl.List(pl.Struct({"embedding": pl.List(pl.Float64)})),
        "usage": _USAGE,
        "error": pl.Struct({"message": pl.String, "type": pl.String, "code": pl.String}),
    }
)
LINE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "custom_id": pl.String(),
    "response": pl.Struct({"status_code": pl.Int32, "request_id": pl.String, "body": _BODY}),
    "error": pl.Struct({"code": pl.String, "message": pl.String}),
}
RESULT_SCHEMA: dict[str, pl.DataType] = {
    "custom_id": pl.String(),
    "batch_id": pl.String(),
    "batch_request_id": pl.String(),
    "request_id": pl.String(),
    "status_code": pl.Int32(),
    "model": pl.String(),
    "answer": pl.String(),
    "refusal": pl.String(),
    "embedding": pl.List(pl.Float64),
    "finish_reason": pl.String(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "cached_tokens": pl.Int64(),
    "reasoning_tokens": pl.Int64(),
    "error_code": pl.String(),
    "error_type": pl.String(),
    "error_message": pl.String(),
}


def _result_columns(batch_id: str | None) -> list[pl.Expr]:
    response = pl.col("response")
    body = response.struct.field("body")
    usage = body.struct.field("usage")
    choice = body.struct.field("choices").list.first()
    message = choice.struct.field("message")
    contents = body.struct.field("output").list.eval(pl.element().struct.field("content").explode())

    def output_parts(kind: str, name: str) -> pl.Expr:
        texts = contents.list.eval(
            pl.when(pl.element().struct.field("type") == kind).then(pl.element().struct.field(name))
        ).list.drop_nulls()
        return pl.when(texts.list.len() > 0).then(texts.list.join(""))

    body_error = body.struct.field("error")
    line_error = pl.col("error")
    return [
        pl.col("custom_id"),
        pl.lit(batch_id, dtype=pl.String).alias("batch_id"),
        pl.col("id").alias("batch_request_id"),
        response.struct.field("request_id"),
        response.struct.field("status_code"),
        body.struct.field("model"),
        pl.coalesce(
            message.struct.field("content"),
            choice.struct.field("text"),
            output_parts("output_text", "text"),
        ).alias("answer"),
        pl.coalesce(message.struct.field("refusal"), output_parts("refusal", "refusal")).alias(
            "refusal"
        ),
        body.struct.field("data").list.first().struct.field("embedding"),
        pl.coalesce(
            choice.struct.field("finish_reason"),
            body.struct.field("incomplete_details").struct.field("reason"),
            body.struct.field("status"),
        ).alias("finish_reason"),
        pl.coalesce(usage.struct.field("prompt_tokens"), usage.struct.field("input_tokens")).alias(
            "input_tokens"
        ),
        pl.coalesce(
            usage.struct.field("completion_tokens"), usage.struct.field("output_tokens")
        ).alias("output_tokens"),
        usage.struct.field("total_tokens"),
        pl.coalesce(
            usage.struct.field("prompt_tokens_details").struct.field("cached_tokens"),
            usage.struct.field("input_tokens_details").struct.field("cached_tokens"),
        ).alias("cached_tokens"),
        pl.coalesce(
            usage.struct.field("completion_tokens_details").struct.field("reasoning_tokens"),
            usage.struct.field("output_tokens_details").struct.field("reasoning_tokens"),
        ).alias("reasoning_tokens"),
        pl.coalesce(line_error.struct.field("code"), body_error.struct.field("code")).alias(
            "error_code"
        ),
        body_error.struct.field("type").alias("error_type"),
        pl.coalesce(line_error.struct.field("message"), body_error.struct.field("message")).alias(
            "error_message"
        ),
    ]


def empty_results() -> pl.DataFrame:
    """A frame with no rows and the columns of every parsed file."""
    return pl.DataFrame(schema=RESULT_SCHEMA)


def scan_batch_file(path: str | Path | None, *, batch_id: str | None = None) -> pl.LazyFrame:
    """Lazily parse an output or error file; a missing or empty file gives no rows.

    Sink the result (`sink_parquet`) to stay within a small, constant memory.
    """
    if path is None or not Path(path).exists() or Path(path).stat().st_size == 0:
        return empty_results().lazy()
    return (
        pl.scan_ndjson(path, schema=LINE_SCHEMA)
        .select(_result_columns(batch_id))
        .cast(RESULT_SCHEMA)  # type: ignore[arg-type]
    )


def parse_batch_file(path: str | Path | None, *, batch_id: str | None = None) -> pl.DataFrame:
    """Parse an output or error file into a frame of RESULT_SCHEMA."""
    return scan_batch_file(path, batch_id=batch_id).collect(engine="streaming")


def parse_batch_files(files: Mapping[str, list[str | Path | None]]) -> pl.DataFrame:
    """Parse the output and error files of several batches: {batch_id: [paths]}."""
    frames = [
        parse_batch_file(path, batch_id=batch_id)
        for batch_id, paths in files.items()
        for path in paths
    ]
    return pl.concat(frames) if frames else empty_results()


def json_schema_to_dtype(schema: Mapping[str, Any]) -> pl.DataType:
    """The polars dtype that holds values of a JSON schema (objects, arrays, scalars, $refs)."""
    return _to_dtype(schema, schema, ())


def _to_dtype(
    node: Mapping[str, Any], root: Mapping[str, Any], refs: tuple[str, ...]
) -> pl.DataType:
    if "$ref" in node:
        ref = node["$ref"]
        if ref in refs:
            raise ValueError(f"recursive $ref {ref!r} has no polars dtype; pass dtype=")
        target: Any = root
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs ('#/...') are followed, not {ref!r}; pass dtype=")
        for part in ref[2:].split("/"):
            target = target[part]
        return _to_dtype(target, root, (*refs, ref))
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [option for option in node[key] if option.get("type") != "null"]
            dtypes = {_to_dtype(option, root, refs) for option in options}
            if len(dtypes) != 1:
                raise ValueError(f"a {key} of different types has no polars dtype; pass dtype=")
            return dtypes.pop()
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise ValueError(f"the type union {kind!r} has no polars dtype; pass dtype=")
        kind = kinds[0]
    if kind is None and "enum" in node:
        values = [v for v in node["enum"] if v is not None]
        kind = "string" if all(isinstance(v, str) for v in values) else None
    if kind == "object":
        properties = node.get("properties")
        if not properties:
            raise ValueError("an object without properties has no polars dtype; pass dtype=")
        return pl.Struct({name: _to_dtype(sub, root, refs) for name, sub in properties.items()})
    if kind == "array":
        return pl.List(_to_dtype(node.get("items", {"type": "string"}), root, refs))
    simple = {
        "string": pl.String(),
        "integer": pl.Int64(),
        "number": pl.Float64(),
        "boolean": pl.Boolean(),
        "null": pl.Null(),
    }
    if kind in simple:
        return simple[kind]
    raise ValueError(f"the JSON schema {dict(node)!r} has no polars dtype; pass dtype=")


def _decode_rows(texts: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Decode JSON texts; a text that does not fit `dtype` (or is not JSON) becomes null."""
    try:
        decoded = texts.str.json_decode(dtype)
        if decoded.len() == texts.len():  # polars drops a lone blank text instead of failing
            return decoded
    except pl.exceptions.PolarsError:
        pass
    if texts.len() <= 1:
        return pl.Series(texts.name, [None] * texts.len(), dtype=dtype)
    half = texts.len() // 2  # bisect to the bad rows: O(bad * log n) decodes
    return pl.concat(
        [_decode_rows(texts.head(half), dtype), _decode_rows(texts.slice(half), dtype)]
    )


def decode_json_answers(
    frame: pl.DataFrame,
    *,
    schema: Mapping[str, Any] | None = None,
    dtype: pl.DataType | None = None,
    column: str = "answer",
    into: str = "answer_json",
) -> pl.DataFrame:
    """Add a column with each answer decoded as JSON, typed from a JSON schema or a dtype.

    Answers that are null, blank, not JSON, or do not fit the type (a truncated answer, say)
    get null.
    """
    if dtype is None:
        if schema is None:
            raise ValueError("pass the response JSON schema (schema=) or a polars dtype (dtype=)")
        dtype = json_schema_to_dtype(schema)
    texts = frame.select(
        pl.when(pl.col(column).str.strip_chars().str.len_bytes() > 0).then(pl.col(column))
    ).to_series()
    return frame.with_columns(_decode_rows(texts, dtype).alias(into))
