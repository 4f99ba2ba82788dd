"""Property tests: the fast ways of sharding against the slow references they replaced.

Request dicts go in plain batches through msgspec; the reference validates and encodes them one
at a time with the `json` module. A DataFrame and a template are rendered straight into shard
files; the reference renders every line first and places them by cumulative sizes. Both must give
the same shard files byte for byte, the same Shard records and the same error.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from upath import UPath

from batch_assets.core.limits import EMBEDDINGS, MODERATIONS, BatchLimits
from batch_assets.core.request_template import TemplateError, render_requests
from batch_assets.core.request_validation import RequestValidationError
from batch_assets.core.sharding import (
    Shard,
    shard_request_frame,
    shard_requests,
    shard_template_frame,
)
from tests.core.reference_sharding import (
    reference_shard_requests,
)
from tests.core.strategies import property_settings
from tests.core.test_request_template_properties import frames, templates
from tests.core.test_request_validation_properties import request_body
from tests.core.test_sharding_properties import requests as request_lists

CHAT = "/v1/chat/completions"
SETTINGS = property_settings(60)


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    SMALL = 1


class Text(str):
    pass


class Number(int):
    pass


class Ratio(float):
    pass


class Items(list[Any]):
    pass


class Mapping(dict[str, Any]):
    pass


class Reversed(dict[str, Any]):
    """A dict whose items() come in reverse: `json` writes them so, msgspec would not."""

    def items(self) -> Any:
        return list(reversed(list(super().items())))


@dataclasses.dataclass
class Point:
    x: int


def moved_to_end() -> OrderedDict[str, int]:
    ordered = OrderedDict(a=1, b=2)
    ordered.move_to_end("a")
    return ordered


# Values msgspec writes otherwise than `json` (or refuses), and values both write alike.
TRICKY: list[Callable[[], Any]] = [
    lambda: 1e-5,
    lambda: 2.5e-7,
    lambda: 1e16,
    lambda: -1.5e300,
    lambda: 5e-324,
    lambda: 1e-4,
    lambda: 9999999999999998.0,
    lambda: -0.0,
    lambda: float("nan"),
    lambda: float("-inf"),
    lambda: (1, "two", 3.0),
    lambda: Mapping(a=1),
    lambda: Reversed(a=1, b=2),
    moved_to_end,
    lambda: Text("text"),
    lambda: Number(7),
    lambda: Ratio(0.5),
    lambda: Items([1, 2]),
    lambda: {1: "int key"},
    lambda: {2.5: "float key"},
    lambda: {1e16: "float key"},
    lambda: {True: "bool key"},
    lambda: {None: "null key"},
    lambda: {(1, 2): "tuple key"},
    lambda: {1, 2},
    lambda: frozenset({3}),
    lambda: b"bytes",
    lambda: bytearray(b"ab"),
    lambda: memoryview(b"ab"),
    lambda: datetime.date(2024, 1, 2),
    lambda: datetime.datetime(2024, 1, 2, 3, 4),
    lambda: decimal.Decimal("1.5"),
    lambda: uuid.UUID(int=5),
    lambda: Colour.RED,
    lambda: Size.SMALL,
    lambda: Point(1),
    lambda: 2**64,
    lambda: -(2**70),
    lambda: 10**400,
    lambda: "9" * 400,
    lambda: "\ud800",
    lambda: {"\udc00": 1},
    lambda: [[[[[[[[[[1]]]]]]]]]],
    lambda: None,
    lambda: True,
]


@st.composite
def request_stream(draw: st.DrawFn, endpoint: str) -> list[Any]:
    """Enough requests to fill several batches: the drawn ones (some broken), then copies of one
    valid request under fresh custom_ids and some models; a few hold a tricky value."""
    items = draw(request_lists(endpoint))
    simple = {
        CHAT: {"messages": [{"role": "user", "content": "hello é"}], "temperature": 0.5},
        EMBEDDINGS: {"input": ["a", "b"]},
        MODERATIONS: {"input": "text"},
    }[endpoint]
    body = draw(st.sampled_from([simple, request_body(draw, endpoint, ["m1"])]))
    models = draw(st.sampled_from([["m1"], ["m1", "m2"], ["m1"] * 5 + ["日本"]]))
    for index in range(draw(st.sampled_from([0, 70, 150, 300]))):
        copy = dict(body, model=models[index % len(models)])
        items.append(
            {"custom_id": f"copy-{index}", "method": "POST", "url": endpoint, "body": copy}
        )
    if items:
        # Where in the stream, as a share of its length (so not mostly near the start).
        for share in draw(st.lists(st.floats(0, 1), max_size=3)):
            item = items[min(int(share * len(items)), len(items) - 1)]
            if isinstance(item, dict) and isinstance(item.get("body"), dict):
                tricky = draw(st.sampled_from(TRICKY))()
                items[items.index(item)] = dict(item, body=dict(item["body"], extra=tricky))
    return items


def run(shard: Callable[[Path], list[Shard]]) -> Any:
    """The shards as (file name, bytes, record fields but url), or the error raised."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            shards = shard(Path(folder))
        except (RequestValidationError, TemplateError) as error:
            assert list(Path(folder).iterdir()) == []
            found = (getattr(error, name, None) for name in ("line", "field", "code"))
            return type(error), str(error), *found
        return [
            (
                UPath(s.url).name,
                UPath(s.url).read_bytes(),
                dataclasses.replace(s, url=UPath(s.url).name),
            )
            for s in shards
        ]


@SETTINGS
@given(data=st.data(), endpoint=st.sampled_from([CHAT, EMBEDDINGS, MODERATIONS]))
def test_request_dicts_equal_the_reference(data: st.DataObject, endpoint: str) -> None:
    items = data.draw(request_stream(endpoint))
    limits = BatchLimits(
        max_requests=data.draw(st.sampled_from([1, 7, 64, 50_000])),
        max_bytes=data.draw(st.sampled_from([150, 2000, 40_000, 200 * 1024 * 1024])),
        max_embedding_inputs=data.draw(st.sampled_from([1, 8, 50_000])),
    )
    got = run(lambda out: shard_requests(iter(items), out, endpoint=endpoint, limits=limits))
    expected = run(
        lambda out: reference_shard_requests(iter(items), out, endpoint=endpoint, limits=limits)
    )
    assert got == expected


@SETTINGS
@given(data=st.data())
def test_template_frames_equal_the_reference(data: st.DataObject) -> None:
    template = data.draw(templates())
    df = data.draw(frames(template.null_as_empty))
    copies = data.draw(st.sampled_from([1, 1, 20]))
    if copies > 1 and df.height:  # more rows, under fresh ids
        df = pl.concat(
            [df.with_columns(pl.col("id") + f"-{copy}") for copy in range(copies)], how="vertical"
        )
    limits = BatchLimits(
        max_requests=data.draw(st.sampled_from([1, 3, 50, 50_000])),
        max_bytes=data.draw(st.sampled_from([200, 5_000, 100_000, 200 * 1024 * 1024])),
        max_embedding_inputs=data.draw(st.sampled_from([1, 4, 50_000])),
    )
    got = run(lambda out: shard_template_frame(df, template, out, limits=limits))

    def reference(out: Path) -> list[Shard]:
        rendered = render_requests(df, template)
        return shard_request_frame(
            rendered, out, endpoint=template.endpoint, model=template.model, limits=limits
        )

    assert got == run(reference)


def simple_body(endpoint: str) -> dict[str, Any]:
    """A valid body for `endpoint` that msgspec and `json` write alike."""
    if endpoint == CHAT:
        return {"model": "m1", "messages": [{"role": "user", "content": "hé"}], "top_p": 0.5}
    return {"model": "m1", "input": ["a", "b"] if endpoint == EMBEDDINGS else "text"}


def valid_requests(endpoint: str, count: int) -> list[dict[str, Any]]:
    """`count` valid requests that msgspec and `json` write alike."""
    return [
        {"custom_id": f"id-{i}", "method": "POST", "url": endpoint, "body": simple_body(endpoint)}
        for i in range(count)
    ]


def assert_as_the_reference(items: list[Any], endpoint: str) -> None:
    got = run(lambda out: shard_requests(iter(items), out, endpoint=endpoint))
    assert got == run(lambda out: reference_shard_requests(iter(items), out, endpoint=endpoint))


@SETTINGS
@given(
    endpoint=st.sampled_from([CHAT, EMBEDDINGS, MODERATIONS]),
    count=st.sampled_from([1, 64, 65, 200]),
    tricky=st.sampled_from(TRICKY),
    share=st.floats(0, 1),
    where=st.sampled_from(["body", "top", "nested"]),
)
def test_one_tricky_value_equals_the_reference(
    endpoint: str, count: int, tricky: Callable[[], Any], share: float, where: str
) -> None:
    """Valid requests but one, which holds a value msgspec may write otherwise than `json`."""
    items = valid_requests(endpoint, count)
    item = items[min(int(share * count), count - 1)]
    if where == "top":
        item["extra"] = tricky()
    elif where == "body":
        item["body"]["extra"] = tricky()
    else:
        item["body"]["extra"] = {"list": [1, {"deep": tricky()}]}
    assert_as_the_reference(items, endpoint)


@SETTINGS
@given(
    endpoint=st.sampled_from([CHAT, EMBEDDINGS, MODERATIONS]),
    count=st.sampled_from([1, 64, 65, 200]),
    share=st.floats(0, 1),
    fault=st.sampled_from(
        [
            ("url", "/v1/responses"),
            ("method", "GET"),
            ("method", "post"),
            ("custom_id", ""),
            ("custom_id", 5),
            ("custom_id", "id-0"),
            ("custom_id", "\ud800"),
            ("model", ""),
            ("model", None),
            ("model", 5),
            ("body", []),
            ("input", list(range(9))),
        ]
    ),
)
def test_one_wrong_field_equals_the_reference(
    endpoint: str, count: int, share: float, fault: tuple[str, Any]
) -> None:
    """Valid requests but one, with a wrong value in a field validation watches."""
    items: list[Any] = valid_requests(endpoint, count)
    item = items[min(int(share * count), count - 1)]
    name, value = fault
    (item["body"] if name in ("model", "input") else item)[name] = value
    assert_as_the_reference(items, endpoint)
