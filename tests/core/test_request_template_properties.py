"""Property tests: rendered lines and their shards against a json.dumps reference."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from upath import UPath

from batch_assets.core.limits import BatchLimits
from batch_assets.core.request_template import (
    TEMPLATE_ENDPOINTS,
    RequestTemplate,
    render_requests,
)
from batch_assets.core.request_validation import validate_request_lines
from batch_assets.core.sharding import shard_request_frame
from tests.core.strategies import json_values, property_settings

SETTINGS = property_settings(60)
NASTY = [
    '"',
    "\\",
    "\\n",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x1f",
    "\x7f",
    "\u2028",
    "\ufeff",
    "é",
    "日本",
    "😀",
    "\U0010ffff",
    "{",
    "}",
    "</script>",
    '{"a": 1}',
]
# Any Unicode but lone surrogates (which polars cannot hold), weighted towards what JSON escapes.
TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.sampled_from(NASTY), max_size=6).map("".join),
    st.builds(lambda part, times: part * times, st.sampled_from(NASTY), st.integers(500, 5000)),
    st.builds(lambda part, times: part * times, st.text(min_size=1, max_size=4), st.just(3000)),
)
JSON = json_values(TEXT, max_leaves=8)
SCHEMA = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "integer", "number", "boolean", "null"])},
        optional={"description": TEXT, "enum": st.lists(JSON, max_size=3)},
    ),
    lambda children: st.one_of(
        st.fixed_dictionaries({"type": st.just("array"), "items": children}),
        st.dictionaries(TEXT, children, min_size=1, max_size=3).map(
            lambda properties: {
                "type": "object",
                "properties": properties,
                "required": sorted(properties),
                "additionalProperties": False,
            }
        ),
        st.fixed_dictionaries({"anyOf": st.lists(children, min_size=1, max_size=2)}),
    ),
    max_leaves=6,
)
RESERVED = {"model", "messages", "input", "instructions", "prompt", "response_format", "text"}


@st.composite
def templates(draw: st.DrawFn) -> RequestTemplate:
    """A template over the columns text, note (String) and number (Int64 or Float64)."""
    endpoint = draw(st.sampled_from(TEMPLATE_ENDPOINTS))
    chatty = endpoint in ("/v1/chat/completions", "/v1/responses")
    pieces = draw(st.lists(st.tuples(TEXT, st.sampled_from(["text", "note", "number", None]))))
    user_template = "".join(
        literal.replace("{", "{{").replace("}", "}}") + ("" if name is None else f"{{{name}}}")
        for literal, name in pieces
    )
    params = draw(st.dictionaries(TEXT.filter(lambda key: key not in RESERVED), JSON, max_size=3))
    return RequestTemplate(
        endpoint=endpoint,
        model=draw(st.sampled_from(["gpt-4o-mini", "日本-model", 'm"\\'])),
        user_template=user_template,
        system_prompt=draw(st.none() | TEXT) if chatty else None,
        params=params,
        response_format=draw(st.none() | SCHEMA) if chatty else None,
        response_format_name=draw(st.sampled_from(["response", "a b"])),
        custom_id_column="id",
        null_as_empty=draw(st.booleans()),
    )


@st.composite
def frames(draw: st.DrawFn, null_as_empty: bool) -> pl.DataFrame:
    """Rows of unique non-empty ids, texts (null only when allowed) and numbers."""
    ids = draw(st.lists(TEXT.filter(bool), unique=True, max_size=12))
    cell = st.none() | TEXT if null_as_empty else TEXT
    number = st.sampled_from(
        [
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=True, allow_infinity=True),
        ]
    )
    numbers = draw(st.lists(draw(number), min_size=len(ids), max_size=len(ids)))
    return pl.DataFrame(
        {
            "id": pl.Series(ids, dtype=pl.String),
            "text": pl.Series(draw(st.lists(cell, min_size=len(ids), max_size=len(ids)))),
            "note": pl.Series(draw(st.lists(cell, min_size=len(ids), max_size=len(ids)))),
            "number": pl.Series(numbers, strict=False),
        },
        schema_overrides={"text": pl.String, "note": pl.String},
    )


def reference(df: pl.DataFrame, template: RequestTemplate) -> list[dict[str, Any]]:
    """The slow way: each row's values cast to text by polars, the request built as a dict."""
    texts = df.select(pl.col(name).cast(pl.String).fill_null("") for name in df.columns)
    return [
        json.loads(json.dumps(template.request(row["id"], template.render_text(row))))
        for row in texts.iter_rows(named=True)
    ]


@SETTINGS
@given(data=st.data())
def test_rendered_lines_parse_to_the_reference(data: st.DataObject) -> None:
    template = data.draw(templates())
    df = data.draw(frames(template.null_as_empty))
    rendered = render_requests(df, template)
    assert rendered["custom_id"].to_list() == df["id"].to_list()
    lines = rendered["request"]
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert [json.loads(line) for line in lines] == reference(df, template)
    if df.height:
        summary = validate_request_lines(lines, endpoint=template.endpoint)
        assert summary.n_requests == df.height


@SETTINGS
@given(data=st.data())
def test_shards_hold_the_rendered_lines_in_order(data: st.DataObject) -> None:
    template = data.draw(templates())
    df = data.draw(frames(template.null_as_empty).filter(lambda frame: frame.height > 0))
    rendered = render_requests(df, template)
    sizes = rendered["request"].str.len_bytes() + 1
    limits = BatchLimits(
        max_requests=data.draw(st.integers(1, 5)),
        max_bytes=int(sizes.max()) + data.draw(st.integers(0, 3 * int(sizes.max()))),  # type: ignore[arg-type]
        max_embedding_inputs=data.draw(st.integers(1, 5)),
    )
    with tempfile.TemporaryDirectory() as folder:
        shards = shard_request_frame(
            rendered, Path(folder), endpoint=template.endpoint, model=template.model, limits=limits
        )
        written = []
        for shard in shards:
            content = UPath(shard.url).read_bytes()
            lines = content.decode().split("\n")
            assert lines.pop() == ""
            assert shard.n_requests == len(lines) <= limits.max_requests
            assert shard.n_bytes == len(content) <= limits.max_bytes
            assert shard.sha256 == hashlib.sha256(content).hexdigest()
            if template.endpoint == "/v1/embeddings":
                assert shard.n_embedding_inputs == len(lines) <= limits.max_embedding_inputs
            written.extend(lines)
    assert written == rendered["request"].to_list()
