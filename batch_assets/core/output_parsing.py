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

`parse_batch_file` decodes the file a piece at a time with msgspec into typed structs that name
only the keys above (everything else is skipped unread), then builds the columns. A line whose
values do not fit those types is decoded again with `json` and read leniently: a value of the
wrong type counts as null, a lone UTF-16 surrogate becomes U+FFFD. A line that is not JSON is an
error naming the line; blank lines are skipped. A file of SPLIT_BYTES or more is decoded by two
processes, this one and a helper, each taking chunks of it (output_split): the same frame, rows in
file order, the same errors. `scan_batch_file` gives the same frame for well-typed files through
polars, lazily, for sinking to Parquet in constant memory; polars' reader fails on an integer
beyond 128 bits anywhere in a line, where `parse_batch_file` does not.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import msgspec
import polars as pl

from batch_assets.core.output_split import decode_in_two_processes

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


JSON_ANSWER_COLUMN = "answer_json"
ANSWERED_STATUS = 200  # the status_code of an answered request


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


# The typed shape of a line for msgspec, which skips every key not named here.
_Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Message(msgspec.Struct, gc=False):
    content: str | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct, gc=False):
    finish_reason: str | None = None
    text: str | None = None
    message: _Message | None = None


class _Part(msgspec.Struct, gc=False):
    type: str | None = None
    text: str | None = None
    refusal: str | None = None


class _OutputItem(msgspec.Struct, gc=False):
    content: list[_Part | None] | None = None


class _Embedding(msgspec.Struct, gc=False):
    embedding: list[float | None] | None = None


class _Cached(msgspec.Struct, gc=False):
    cached_tokens: _Int64 | None = None


class _Reasoning(msgspec.Struct, gc=False):
    reasoning_tokens: _Int64 | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: _Int64 | None = None
    completion_tokens: _Int64 | None = None
    input_tokens: _Int64 | None = None
    output_tokens: _Int64 | None = None
    total_tokens: _Int64 | None = None
    prompt_tokens_details: _Cached | None = None
    input_tokens_details: _Cached | None = None
    completion_tokens_details: _Reasoning | None = None
    output_tokens_details: _Reasoning | None = None


class _Reason(msgspec.Struct, gc=False):
    reason: str | None = None


class _Error(msgspec.Struct, gc=False):
    code: str | None = None
    message: str | None = None
    type: str | None = None


class _Body(msgspec.Struct, gc=False):
    model: str | None = None
    status: str | None = None
    incomplete_details: _Reason | None = None
    choices: list[_Choice | None] | None = None
    output: list[_OutputItem | None] | None = None
    data: list[_Embedding | None] | None = None
    usage: _Usage | None = None
    error: _Error | None = None


class _Response(msgspec.Struct, gc=False):
    status_code: _Int32 | None = None
    request_id: str | None = None
    body: _Body | None = None


class _Line(msgspec.Struct, gc=False):
    id: str | None = None
    custom_id: str | None = None
    response: _Response | None = None
    error: _Error | None = None


_LINES: msgspec.json.Decoder[_Line] = msgspec.json.Decoder(_Line)
_READ_BYTES = 1024 * 1024  # small pieces: the objects decoded stay in the CPU caches
_FRAME_ROWS = 1 << 16
_SURROGATE = re.compile("[\ud800-\udfff]")
_COLUMNS = [name for name in RESULT_SCHEMA if name != "batch_id"]
SPLIT_BYTES = 256 * 1024 * 1024  # from this size on, two processes: see parse_batch_file


def _joined(items: list[_OutputItem | None], kind: str) -> str | None:
    """The texts (or refusals) of every output content part of `kind`, joined; None if none."""
    texts = []
    for item in items:
        if item is not None and item.content:
            for part in item.content:
                if part is not None and part.type == kind:
                    value = part.text if kind == "output_text" else part.refusal
                    if value is not None:
                        texts.append(value)
    return "".join(texts) if texts else None


def _add_columns(lines: list[_Line], columns: list[list[Any]]) -> None:
    """Append the values of _COLUMNS for every line, one list per column."""
    (custom_id, batch_request_id, request_id, status_code, model, answer_, refusal_, embedding_,
     finish_reason_, input_tokens, output_tokens, total_tokens, cached_tokens, reasoning_tokens,
     error_code, error_type, error_message) = (column.append for column in columns)  # fmt: skip
    for line in lines:
        custom_id(line.custom_id)
        batch_request_id(line.id)
        response = line.response
        code = message = kind = None
        if line.error is not None:
            code, message = line.error.code, line.error.message
        body = None if response is None else response.body
        if body is None:
            request_id(None if response is None else response.request_id)
            status_code(None if response is None else response.status_code)
            for append in (model, answer_, refusal_, embedding_, finish_reason_):
                append(None)
            for append in (input_tokens, output_tokens, total_tokens, cached_tokens):
                append(None)
            reasoning_tokens(None)
        else:
            request_id(response.request_id)  # type: ignore[union-attr]
            status_code(response.status_code)  # type: ignore[union-attr]
            model(body.model)
            answer = refusal = finish_reason = None
            if body.choices:
                choice = body.choices[0]
                if choice is not None:
                    finish_reason = choice.finish_reason
                    if choice.message is not None:
                        answer, refusal = choice.message.content, choice.message.refusal
                    if answer is None:
                        answer = choice.text
            if body.output is not None:
                if answer is None:
                    answer = _joined(body.output, "output_text")
                if refusal is None:
                    refusal = _joined(body.output, "refusal")
            if finish_reason is None:
                if body.incomplete_details is not None:
                    finish_reason = body.incomplete_details.reason
                if finish_reason is None:
                    finish_reason = body.status
            answer_(answer)
            refusal_(refusal)
            embedding_(body.data[0].embedding if body.data and body.data[0] is not None else None)
            finish_reason_(finish_reason)
            usage = body.usage
            if usage is None:
                for append in (input_tokens, output_tokens, total_tokens, cached_tokens,
                               reasoning_tokens):  # fmt: skip
                    append(None)
            else:
                value = usage.prompt_tokens
                input_tokens(usage.input_tokens if value is None else value)
                value = usage.completion_tokens
                output_tokens(usage.output_tokens if value is None else value)
                total_tokens(usage.total_tokens)
                value = None
                if usage.prompt_tokens_details is not None:
                    value = usage.prompt_tokens_details.cached_tokens
                if value is None and usage.input_tokens_details is not None:
                    value = usage.input_tokens_details.cached_tokens
                cached_tokens(value)
                value = None
                if usage.completion_tokens_details is not None:
                    value = usage.completion_tokens_details.reasoning_tokens
                if value is None and usage.output_tokens_details is not None:
                    value = usage.output_tokens_details.reasoning_tokens
                reasoning_tokens(value)
            if body.error is not None:
                kind = body.error.type
                if code is None:
                    code = body.error.code
                if message is None:
                    message = body.error.message
        error_code(code)
        error_type(kind)
        error_message(message)


def _lenient(value: Any, shape: Any) -> Any:
    """`value` as the msgspec type `shape`, where any part of another type becomes null."""
    try:
        return msgspec.convert(value, shape)
    except msgspec.ValidationError:
        pass
    if isinstance(shape, type) and issubclass(shape, msgspec.Struct):
        if not isinstance(value, dict):
            return None
        fields = msgspec.structs.fields(shape)
        return shape(**{f.name: _lenient(value.get(f.name), f.type) for f in fields})
    origin = typing.get_origin(shape)
    if origin is list:
        item = typing.get_args(shape)[0]
        return [_lenient(x, item) for x in value] if isinstance(value, list) else None
    if origin in (typing.Union, types.UnionType):  # X | None: try X
        return _lenient(value, typing.get_args(shape)[0])
    return None


def _clean(value: Any) -> Any:
    """`value` with lone surrogates (which UTF-8 cannot hold) as U+FFFD, throughout."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return value


def _decode_slowly(data: bytes, first_line: int, source: str) -> list[_Line]:
    """Decode line by line; a line that does not fit the typed shape is read leniently."""
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=first_line):
        if not raw.strip():
            continue
        try:
            lines.append(_LINES.decode(raw))
            continue
        except msgspec.MsgspecError:
            pass
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{source}: line {number} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            kind = "an array" if isinstance(value, list) else json.dumps(value)[:40]
            raise ValueError(f"{source}: line {number} is {kind}, not a JSON object")
        lines.append(_lenient(_clean(value), _Line))
    return lines


def _pieces(path: Path, start: int, end: int) -> Iterator[tuple[memoryview, int]]:
    """Bytes [start, end) of the file in pieces of whole lines, with the offset each starts at."""
    with path.open("rb") as stream:
        stream.seek(start)
        buffer = bytearray(_READ_BYTES)
        filled, offset, left = 0, start, end - start
        while True:
            with memoryview(buffer) as view:
                read = stream.readinto(view[filled : filled + min(len(buffer) - filled, left)])
            filled += read
            left -= read
            cut = buffer.rfind(b"\n", 0, filled) + 1 if read else filled
            if cut == 0 and read:
                if filled == len(buffer):  # a line longer than the buffer
                    buffer.extend(bytes(len(buffer)))
                continue
            if cut:
                with memoryview(buffer)[:cut] as piece:
                    yield piece, offset
                offset += cut
                buffer[: filled - cut] = buffer[cut:filled]
                filled -= cut
            if not read:
                return


def _line_number(path: Path, offset: int) -> int:
    """The 1-based number of the line that starts at byte `offset`."""
    with path.open("rb") as stream:
        count = 1
        while offset > 0:
            data = stream.read(min(offset, _READ_BYTES))
            count += data.count(b"\n")
            offset -= len(data)
        return count


def _series(name: str, values: list[Any]) -> pl.Series:
    """One column's values as a Series of its dtype; nulls only (often: refusal, embedding,
    errors) are made at once, without reading them one by one."""
    dtype = RESULT_SCHEMA[name]
    if values and values[0] is None and values.count(None) == len(values):
        return pl.Series(name, dtype=dtype).extend_constant(None, len(values))
    return pl.Series(name, values, dtype=dtype)


def _frame(columns: list[list[Any]]) -> pl.DataFrame:
    """The columns' values as a frame of _COLUMNS, which empties them."""
    frame = pl.DataFrame(
        [_series(name, values) for name, values in zip(_COLUMNS, columns, strict=True)]
    )
    for values in columns:
        values.clear()
    return frame


def decode_range(path: Path, start: int, end: int, source: str) -> pl.DataFrame:
    """The lines in bytes [start, end) of an output file (cut at line ends) as a frame of every
    column but batch_id; `source` names the file in errors."""
    frames: list[pl.DataFrame] = []
    columns: list[list[Any]] = [[] for _ in _COLUMNS]
    with _gc_paused():
        for data, offset in _pieces(path, start, end):
            try:
                lines = _LINES.decode_lines(data)
            except msgspec.MsgspecError:
                lines = _decode_slowly(bytes(data), _line_number(path, offset), source)
            _add_columns(lines, columns)
            del lines
            if len(columns[0]) >= _FRAME_ROWS:
                frames.append(_frame(columns))
        frames.append(_frame(columns))
    return pl.concat(frames)


def _can_split() -> bool:
    """Whether a helper process could run beside this one: two CPUs or more, and a Python to
    start it with."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux: the CPUs this process may use
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    return cpus > 1 and bool(sys.executable)


def parse_batch_file(
    path: str | Path | None,
    *,
    batch_id: str | None = None,
    name: str | None = None,
    split_bytes: int | None = None,
) -> pl.DataFrame:
    """Parse an output or error file into a frame of RESULT_SCHEMA, a piece at a time.

    `name` is the file's name in error messages (the file's own name by default). A file of
    `split_bytes` or more is decoded by two processes (output_split); by default SPLIT_BYTES
    where a helper process can run beside this one, else never.
    """
    if path is None or not Path(path).exists() or Path(path).stat().st_size == 0:
        return empty_results()
    path = Path(path)
    source = name or path.name
    size = path.stat().st_size
    if split_bytes is None:
        split_bytes = SPLIT_BYTES if _can_split() else sys.maxsize
    if size >= split_bytes:
        frame = pl.concat(decode_in_two_processes(path, source, decode_range))
    else:
        frame = decode_range(path, 0, size, source)
    return frame.select(
        _COLUMNS[0], pl.lit(batch_id, dtype=pl.String).alias("batch_id"), *_COLUMNS[1:]
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: decoding makes millions of objects, none cyclic."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_batch_files(files: Mapping[str, list[str | Path | None]]) -> pl.DataFrame:
    """Parse the output and error files of several batches: {batch_id: [paths]}."""
    frames = [
        parse_batch_file(path, batch_id=batch_id)
        for batch_id, paths in files.items()
        for path in paths
    ]
    return pl.concat(frames) if frames else empty_results()


def json_schema_to_dtype(schema: Mapping[str, Any], *, enums: bool = False) -> pl.DataType:
    """The polars dtype that holds values of a JSON schema (objects, arrays, scalars, $refs);
    with `enums`, a string `enum` is a polars Enum of its values, else a String."""
    return _to_dtype(schema, schema, (), enums)


def _to_dtype(
    node: Mapping[str, Any], root: Mapping[str, Any], refs: tuple[str, ...], enums: bool
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
        return _to_dtype(target, root, (*refs, ref), enums)
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [option for option in node[key] if option.get("type") != "null"]
            dtypes = {_to_dtype(option, root, refs, enums) for option in options}
            if len(dtypes) != 1:
                raise ValueError(f"a {key} of different types has no polars dtype; pass dtype=")
            return dtypes.pop()
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise ValueError(f"the type union {kind!r} has no polars dtype; pass dtype=")
        kind = kinds[0]
    strings = [v for v in node.get("enum") or [] if v is not None]
    if strings and all(isinstance(v, str) for v in strings) and kind in (None, "string"):
        return pl.Enum(list(dict.fromkeys(strings))) if enums else pl.String()
    if kind == "object":
        properties = node.get("properties")
        if not properties:
            raise ValueError("an object without properties has no polars dtype; pass dtype=")
        return pl.Struct(
            {name: _to_dtype(sub, root, refs, enums) for name, sub in properties.items()}
        )
    if kind == "array":
        return pl.List(_to_dtype(node.get("items", {"type": "string"}), root, refs, enums))
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
    into: str = JSON_ANSWER_COLUMN,
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
