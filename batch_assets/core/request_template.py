"""A declarative request template, rendered over a polars DataFrame into JSONL request lines.

Lines are built with vectorized polars expressions: the constant JSON around the user text is
serialized once with `json.dumps`, and each row's values are JSON-escaped by polars. The lines
parse to exactly what `json.dumps` of the same request dict gives.

Decisions: `{column}` placeholders appear in `user_template` only (`{{` and `}}` are literal
braces; the system prompt is literal text). Non-string columns are rendered with polars' cast to
String. A null value in a placeholder column is an error naming the row and column, unless
`null_as_empty=True`. custom_id values are cast to String and must be non-null, non-empty and
unique. `response_model` (a Pydantic model) stands for `response_format`: the strict JSON
schema the openai SDK makes of it. A number beyond a double or a lone UTF-16 surrogate in the
params, the response format, the model or the prompts is an error naming the field
(`body.temperature`).
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import openai
import polars as pl
import pydantic

from batch_assets.core.limits import CHAT_COMPLETIONS, COMPLETIONS, EMBEDDINGS, RESPONSES
from batch_assets.core.portable_json import find_unreadable

TEMPLATE_ENDPOINTS: tuple[str, ...] = (CHAT_COMPLETIONS, RESPONSES, EMBEDDINGS, COMPLETIONS)
_TEXT_KEY = {CHAT_COMPLETIONS: "messages", RESPONSES: "input", EMBEDDINGS: "input"}
_TEXT_KEY[COMPLETIONS] = "prompt"
_RESERVED = {
    CHAT_COMPLETIONS: {"model", "messages"},
    RESPONSES: {"model", "input", "instructions"},
    EMBEDDINGS: {"model", "input"},
    COMPLETIONS: {"model", "prompt"},
}


class TemplateError(ValueError):
    """A template that cannot be rendered over the given DataFrame."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class RequestTemplate:
    """How to turn one DataFrame row into one Batch API request."""

    endpoint: str
    model: str
    user_template: str
    system_prompt: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    response_format: Mapping[str, Any] | None = None
    response_format_name: str = "response"
    custom_id_column: str = "custom_id"
    null_as_empty: bool = False
    response_model: type[pydantic.BaseModel] | None = None

    def __post_init__(self) -> None:
        if self.response_model is not None:
            if self.response_format is not None:
                raise TemplateError("give response_format or response_model, not both")
            # The strict schema OpenAI's SDK makes of a Pydantic model, as for a function tool.
            tool = openai.pydantic_function_tool(self.response_model)
            object.__setattr__(self, "response_format", tool["function"].get("parameters"))
            if self.response_format_name == "response":
                object.__setattr__(self, "response_format_name", self.response_model.__name__)
        if self.endpoint not in TEMPLATE_ENDPOINTS:
            raise TemplateError(
                f"templates support the endpoints {', '.join(TEMPLATE_ENDPOINTS)}; "
                f"got {self.endpoint!r}"
            )
        if not isinstance(self.model, str) or not self.model:
            raise TemplateError(f"model must be a non-empty string, got {self.model!r}")
        if self.system_prompt is not None and self.endpoint in (EMBEDDINGS, COMPLETIONS):
            raise TemplateError(f"{self.endpoint} takes no system_prompt")
        if self.response_format is not None:
            if self.endpoint not in (CHAT_COMPLETIONS, RESPONSES):
                raise TemplateError(f"{self.endpoint} takes no response_format")
            if self.response_format.get("type") == "json_schema":
                raise TemplateError(
                    "response_format is the JSON schema itself; the template wraps it "
                    "in the endpoint's json_schema format"
                )
        clash = sorted(_RESERVED[self.endpoint] & set(self.params))
        if self.response_format is not None:
            key = "response_format" if self.endpoint == CHAT_COMPLETIONS else "text"
            if key in self.params and (key != "text" or "format" in self.params["text"]):
                clash.append(key if key != "text" else "text.format")
        if clash:
            raise TemplateError(
                f"params may not set {', '.join(clash)}: the template sets them itself"
            )
        self.check_json()
        self.placeholders()

    def check_json(self) -> None:
        """Raise unless every request is JSON the Batch API can parse (see portable_json)."""
        found = find_unreadable(self.body(self.user_template), root="body")
        if found is not None:
            raise TemplateError(f"field {found.path!r}: {found.detail}")
        try:
            _dumps(dict(self.params))
            _dumps(self.response_format)
        except (TypeError, ValueError, RecursionError) as exc:
            raise TemplateError(f"params and response_format must be JSON: {exc}") from None

    def placeholders(self) -> tuple[str, ...]:
        """The column names the user template refers to, in order, without repeats."""
        names: list[str] = []
        for _, name, _, _ in self._parts():
            if name is not None and name not in names:
                names.append(name)
        return tuple(names)

    def _parts(self) -> list[tuple[str, str | None, str | None, str | None]]:
        try:
            parts = list(string.Formatter().parse(self.user_template))
        except ValueError as exc:
            raise TemplateError(
                f"user_template is not valid: {exc} (write literal braces as '{{{{' and '}}}}')"
            ) from None
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            if not name:
                raise TemplateError("user_template has an empty placeholder '{}'; name a column")
            if spec or conversion:
                raise TemplateError(
                    f"placeholder {{{name}}} has a format spec or conversion; "
                    "use a plain {column} and format the column in polars"
                )
        return parts

    def body(self, text: Any) -> dict[str, Any]:
        """The request body for one rendered user text (the reference the lines must match)."""
        body: dict[str, Any] = {"model": self.model}
        if self.endpoint == CHAT_COMPLETIONS:
            messages = []
            if self.system_prompt is not None:
                messages.append({"role": "system", "content": self.system_prompt})
            messages.append({"role": "user", "content": text})
            body["messages"] = messages
        else:
            body[_TEXT_KEY[self.endpoint]] = text
            if self.endpoint == RESPONSES and self.system_prompt is not None:
                body["instructions"] = self.system_prompt
        body.update(self.params)
        if self.response_format is not None:
            schema = {
                "type": "json_schema",
                "name": self.response_format_name,
                "schema": dict(self.response_format),
                "strict": True,
            }
            if self.endpoint == CHAT_COMPLETIONS:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {k: v for k, v in schema.items() if k != "type"},
                }
            else:
                body["text"] = {**body.get("text", {}), "format": schema}
        return body

    def request(self, custom_id: str, text: str) -> dict[str, Any]:
        """The whole request for one row (the slow reference for tests)."""
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": self.endpoint,
            "body": self.body(text),
        }

    def render_text(self, row: Mapping[str, Any]) -> str:
        """The user text for one row of string values (the slow reference for tests)."""
        return "".join(
            literal + ("" if name is None else row[name]) for literal, name, _, _ in self._parts()
        )


def _escaped(expr: pl.Expr) -> pl.Expr:
    """The JSON string escape of a non-null String expression, without the quotes."""
    return (
        pl.struct(expr.alias("v"))
        .struct.json_encode()
        .str.strip_prefix('{"v":"')
        .str.strip_suffix('"}')
    )


def _json_inner(text: str) -> str:
    """The JSON string escape of `text`, without the quotes."""
    return _dumps(text)[1:-1]


def _check_columns(df: pl.DataFrame, template: RequestTemplate) -> None:
    needed = [template.custom_id_column, *template.placeholders()]
    for name in needed:
        if name not in df.columns:
            role = "custom_id_column" if name == template.custom_id_column else "user_template"
            raise TemplateError(
                f"{role} names column {name!r}, which the DataFrame does not have; "
                f"available columns: {', '.join(map(repr, df.columns)) or '(none)'}"
            )


# What a JSON string escapes (`json.dumps(ensure_ascii=False)` and polars alike): nothing else.
_JSON_ESCAPED = ['"', "\\", *map(chr, range(0x20))]
# Rows looked at first: a text column that needs escaping usually shows it there.
_ESCAPE_PEEK_ROWS = 1000


def _needs_escape(column: pl.Series) -> bool:
    """Whether a String column holds a character JSON escapes (ids and labels seldom do)."""
    if column.head(_ESCAPE_PEEK_ROWS).str.contains_any(_JSON_ESCAPED).any():
        return True
    return bool(column.str.contains_any(_JSON_ESCAPED).any())


def _as_text(df: pl.DataFrame, name: str) -> tuple[pl.Series, bool]:
    """The column as String, and whether its values may hold characters JSON escapes."""
    column = df[name]
    dtype = column.dtype
    if dtype == pl.String:
        return column, _needs_escape(column)
    if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
        raise TemplateError(f"column {name!r} has type {dtype}, which is not rendered as text")
    plain = dtype.is_numeric() or dtype.is_temporal() or dtype in (pl.Boolean, pl.Null)
    return column.cast(pl.String), not plain


def _check_custom_ids(ids: pl.Series, name: str) -> None:
    if ids.null_count() == 0 and not (ids == "").any() and ids.n_unique() == ids.len():
        return
    bad = ids.is_null() | (ids == "")
    if bad.any():
        row = int(bad.arg_true()[0])
        what = "null" if ids[row] is None else "empty"
        raise TemplateError(f"custom_id column {name!r} is {what} at row {row}")
    repeated = ~ids.is_first_distinct()
    row = int(repeated.arg_true()[0])
    value = ids[row]
    first = int((ids == value).arg_true()[0])
    raise TemplateError(
        f"custom_id column {name!r} has the value {value!r} more than once "
        f"(rows {first} and {row}); custom_ids must be unique"
    )


@dataclass(frozen=True)
class RenderedLines:
    """How to build every row's request line: `line` over the columns of `frame`, in row order."""

    custom_ids: pl.Series  # custom_id as String, checked
    frame: pl.DataFrame  # the custom_id and placeholder values as String, nulls filled
    line: pl.Expr  # the JSON line of a row (without its line end)
    literal_bytes: int  # the bytes of each line outside the values
    # (column, escaped): the values each line holds, in order; `escaped` values are JSON-escaped
    values: tuple[tuple[str, bool], ...]

    def upper_bytes(self) -> pl.Expr:
        """At most the bytes of each line: a JSON escape writes a byte as at most 6."""
        sizes = [
            pl.col(name).str.len_bytes() * (6 if escaped else 1) for name, escaped in self.values
        ]
        return pl.sum_horizontal(pl.lit(self.literal_bytes), *sizes).cast(pl.Int64)


def rendered_lines(df: pl.DataFrame, template: RequestTemplate) -> RenderedLines:
    """Check the frame against the template; say how to render each row's request line."""
    template.check_json()  # again: params is a mapping, which may have changed since
    _check_columns(df, template)
    ids, ids_need_escape = _as_text(df, template.custom_id_column)
    _check_custom_ids(ids, template.custom_id_column)
    columns = {"__custom_id": ids}
    escaped_of: dict[str, bool] = {}
    for index, name in enumerate(template.placeholders()):
        column, need_escape = _as_text(df, name)
        if template.null_as_empty:
            column = column.fill_null("")
        elif column.has_nulls():
            row = int(column.is_null().arg_true()[0])
            raise TemplateError(
                f"column {name!r} is null at row {row} (custom_id {ids[row]!r}); "
                "fill it, drop the row, or set null_as_empty=True"
            )
        columns[f"__p{index}"] = column
        escaped_of[name] = need_escape
    column_of = {name: f"__p{index}" for index, name in enumerate(template.placeholders())}
    # Serialize the request once around two unique markers, then splice the rows in.
    id_marker, text_marker = (f"\x00{secrets.token_hex(16)}\x00" for _ in range(2))
    request_json = _dumps(template.request(id_marker, text_marker))
    head, rest = request_json.split(_dumps(id_marker))
    middle, tail = rest.split(_dumps(text_marker))
    pieces: list[str | tuple[str, bool]] = [
        head + '"',
        ("__custom_id", ids_need_escape),
        '"' + middle + '"',
    ]
    for literal, placeholder, _, _ in template._parts():
        pieces.append(_json_inner(literal))
        if placeholder is not None:
            pieces.append((column_of[placeholder], escaped_of[placeholder]))
    pieces.append('"' + tail)
    line: list[pl.Expr] = []
    literal = ""
    values: list[tuple[str, bool]] = []
    literals = ""
    for piece in pieces:
        if isinstance(piece, str):
            literal += piece  # adjacent literals as one
            literals += piece
        else:
            name, escaped = piece
            values.append(piece)
            expr = _escaped(pl.col(name)) if escaped else pl.col(name)
            line.extend([pl.lit(literal), expr] if literal else [expr])
            literal = ""
    line.append(pl.lit(literal))
    return RenderedLines(
        custom_ids=ids,
        frame=pl.DataFrame(columns),
        line=pl.concat_str(line).alias("request"),
        literal_bytes=len(literals.encode("utf-8")),
        values=tuple(values),
    )


def render_requests(df: pl.DataFrame, template: RequestTemplate) -> pl.DataFrame:
    """Render every row into a request: columns custom_id and request (one JSON line each)."""
    rendered = rendered_lines(df, template)
    lines = rendered.frame.lazy().select(rendered.line).collect(engine="streaming").to_series()
    return pl.DataFrame([rendered.custom_ids.alias("custom_id"), lines])


def render_request_lines(df: pl.DataFrame, template: RequestTemplate) -> pl.Series:
    """The JSONL request lines (without line ends) for every row, in row order."""
    return render_requests(df, template)["request"]
