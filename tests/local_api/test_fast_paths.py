"""The engine's fast paths give what the slow references give, for generated inputs.

Contracts: request lines read to the same Python values (types included); result lines parse to
the same JSON as the old json.dumps lines (compact now; with no float in them, the same bytes as
json.dumps with compact separators); answer digests are the reference digest (blake2b of sorted
msgpack, written by hand in the reference); body checks, read formats and schema instances are
the same (instances: the same value, refusal and budget left); and the answers of pipeline-shaped
requests are the pinned bytes.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_assets.local_api import ids
from batch_assets.local_api.json_codec import decode_json, encode_json_line, value_key
from batch_assets.local_api.json_schema_instance import (
    DeadlinePassed,
    GenerationBudget,
    SchemaRefused,
    instance_for,
)
from batch_assets.local_api.local_models import RequestRejected, respond
from batch_assets.local_api.local_models.answer_text import Shared, stable_digest
from batch_assets.local_api.local_models.body_walk import check_body_values, check_templated_body
from batch_assets.local_api.local_models.chat_completions import answer_chat_completions
from batch_assets.local_api.local_models.structured_output import (
    read_schema_format,
    schema_format,
)
from batch_assets.local_api.schema_plan import plan_for
from batch_assets.local_api.validation import _may_hold_surrogate
from tests.local_api.helpers import SENTIMENT_SCHEMA
from tests.local_api.reference_answers import (
    reference_decode,
    reference_encode_line,
    reference_may_hold_surrogate,
    reference_stable_digest,
    same_json,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_LONE = st.sampled_from(["\ud800", "a\udfffb", "\ud83d\ude00", "\udbff"])
texts = st.one_of(st.text(max_size=12), _LONE)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)


def _outcome(call: Any) -> tuple[Any, ...]:
    """What a call gives: ("ok", value) or the exception's type and words."""
    try:
        return ("ok", call())
    except RequestRejected as rejected:
        return ("rejected", str(rejected), rejected.param, rejected.code)
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))


# --- reading request lines ------------------------------------------------------------------


@FAST
@given(value=json_values, ascii_only=st.booleans())
def test_decode_json_reads_what_json_loads_reads(value: object, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    expected, got = _outcome(lambda: reference_decode(raw)), _outcome(lambda: decode_json(raw))
    assert expected[0] == got[0]
    if expected[0] == "ok":
        assert same_json(expected[1], got[1])
    else:
        assert expected == got


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b"[Infinity, -Infinity]",
        b"1e400",
        b'{"a": -1e400}',
        b"1" * 5000,
        b"123456789012345678901234567890",
        b'"\\ud800"',
        b'"\xed\xa0\x80"',
        b'{"a": 1, "a": 2, "b": 3}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a": ',
        b"-0",
        b"-0.0",
        b"\xef\xbb\xbf{}",
        b'"a\x01b"',
        b'"\xff"',
        b"[1,]",
    ],
)
def test_decode_json_reads_hostile_lines_as_json_loads_does(raw: bytes) -> None:
    expected, got = _outcome(lambda: reference_decode(raw)), _outcome(lambda: decode_json(raw))
    assert expected[0] == got[0]
    if expected[0] == "ok":
        assert same_json(expected[1], got[1])
    else:
        assert expected[1] == got[1]


# --- writing result lines ----------------------------------------------------------------------


def _has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def _keys_are_text(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _keys_are_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_keys_are_text(v) for v in value)
    return True


@FAST
@given(body=st.dictionaries(texts, json_values, max_size=5))
def test_result_lines_parse_to_what_json_dumps_wrote(body: dict[str, Any]) -> None:
    line = {"id": ids.batch_request_id(), "custom_id": "c", "response": {"body": body}}
    expected = _outcome(lambda: reference_encode_line(line))
    got = _outcome(lambda: encode_json_line(line))
    assert expected[0] == got[0]
    if expected[0] != "ok":
        assert got == expected  # a NaN or an infinity: the same ValueError, the same words
        return
    assert got[1].endswith(b"\n") and got[1].count(b"\n") == 1
    assert same_json(json.loads(expected[1]), json.loads(got[1]))
    if not _has_float(line):
        compact = json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
        assert got[1] == compact.encode("utf-8", "surrogatepass")


def test_a_result_line_with_a_number_past_a_double_raises_as_before() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            encode_json_line({"body": {"x": [1.5, {"y": bad}]}})
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            reference_encode_line({"body": {"x": [1.5, {"y": bad}]}})


def test_msgpack_bytes_that_look_like_a_nan_are_looked_at_closely() -> None:
    # 0xcb 0x7f 0xff as an integer and a fixint: not a float, so the line is written.
    line = {"a": [203, 127, 255], "b": "\u02ff"}
    assert json.loads(encode_json_line(line)) == line


# --- answer digests --------------------------------------------------------------------------


@FAST
@given(
    parts=st.lists(st.tuples(json_values, st.booleans()), max_size=5),
)
def test_stable_digest_is_the_reference_digest_of_all_parts(
    parts: list[tuple[object, bool]],
) -> None:
    plain = [value for value, _ in parts]
    wrapped = [Shared(value) if shared else value for value, shared in parts]
    expected = _outcome(lambda: reference_stable_digest(*plain))
    assert _outcome(lambda: stable_digest(*wrapped)) == expected
    assert _outcome(lambda: stable_digest(*wrapped)) == expected  # again: nothing kept


_unicode = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
clean_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        _unicode,
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_unicode, inner, max_size=4),
    max_leaves=16,
)


@FAST
@given(rest=st.dictionaries(st.text(max_size=6), clean_values, max_size=4), own=clean_values)
def test_stable_digest_of_a_kept_template_value_is_the_reference_digest(
    rest: dict[str, Any], own: object
) -> None:
    body = check_templated_body({**rest, "own": own}, "own")
    body = check_templated_body({**rest, "own": own}, "own")  # the kept values now
    for name, value in body.items():
        expected = reference_stable_digest(own, value)
        assert stable_digest(own, Shared(value)) == expected, name
        assert stable_digest(own, Shared(value)) == expected, name  # the same, again


@FAST
@given(value=json_values, seed=st.randoms(use_true_random=False))
def test_stable_digest_does_not_depend_on_the_order_of_keys(value: object, seed: Any) -> None:
    def shuffled(item: object) -> object:
        if isinstance(item, dict):
            keys = list(item)
            seed.shuffle(keys)
            return {key: shuffled(item[key]) for key in keys}
        if isinstance(item, list):
            return [shuffled(x) for x in item]
        return item

    assert stable_digest("m", shuffled(value)) == stable_digest("m", value)


def test_stable_digest_tells_nan_from_null_and_one_from_true() -> None:
    for a, b in ((math.nan, None), (1, True), (1, 1.0), ([1], {"1": 1})):
        assert stable_digest(Shared([a])) == reference_stable_digest([a])
        assert stable_digest(Shared([b])) == reference_stable_digest([b])
        assert stable_digest([a]) != stable_digest([b])


# --- the body check ------------------------------------------------------------------------

deep = st.integers(min_value=95, max_value=105).map(lambda n: json.loads("[" * n + "]" * n))
hostile = st.one_of(json_values, deep, st.just({"\ud800": 1}), st.just([10**400]))


@FAST
@given(
    rest=st.dictionaries(st.sampled_from(["model", "response_format", "tools", "n"]), hostile),
    own=st.lists(hostile, min_size=2, max_size=2),
)
def test_templated_body_check_refuses_what_the_whole_walk_refuses(
    rest: dict[str, Any], own: list[Any]
) -> None:
    for messages in own + own:  # the second round meets a rest it has seen
        body = {**rest, "messages": messages}
        expected = _outcome(lambda: check_body_values(body))  # noqa: B023
        got = _outcome(lambda: check_templated_body(body, "messages"))  # noqa: B023
        if expected[0] != "ok":
            assert got == expected
            continue
        assert got[0] == "ok"
        # the body to answer: the same JSON, in the same key order
        assert same_json(got[1], body)


def test_templated_body_check_walks_the_own_part_of_a_known_template() -> None:
    rest = {"model": "m", "response_format": {"type": "json_schema", "x": [1, 2]}}
    check_templated_body({**rest, "messages": [{"content": "fine"}]}, "messages")
    with pytest.raises(RequestRejected, match=r"Invalid 'messages\[0\]\.content': the string"):
        check_templated_body({**rest, "messages": [{"content": "\ud800"}]}, "messages")
    with pytest.raises(RequestRejected, match=r"Invalid 'messages': the string holds"):
        check_templated_body({**rest, "messages": "\udc00"}, "messages")


# --- response formats ------------------------------------------------------------------------

schemas = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["string", "boolean", "null", "integer", "number", "object"])
            | st.lists(st.sampled_from(["string", "null", "boolean"]), min_size=1, max_size=3),
            "enum": st.lists(scalars, min_size=1, max_size=3),
            "const": scalars,
            "maxLength": st.integers(min_value=-1, max_value=12),
            "minLength": st.integers(min_value=0, max_value=3),
            "format": st.sampled_from(["date", "uuid", "nothing"]),
            "pattern": st.sampled_from(["^[a-c]{2}$", "x+"]),
            "minimum": st.integers(min_value=-5, max_value=5),
        },
    ),
    lambda inner: st.one_of(
        st.builds(
            lambda props, required, extra: {
                "type": "object",
                "properties": props,
                "required": [name for name in props if required] + (["zz"] if extra else []),
                "additionalProperties": False,
            },
            st.dictionaries(st.sampled_from(["a", "b_c", "_", "long_name"]), inner, max_size=3),
            st.booleans(),
            st.booleans(),
        ),
        st.builds(
            lambda items, low, high, unique: {
                "type": "array",
                "items": items,
                **({"minItems": low} if low is not None else {}),
                **({"maxItems": high} if high is not None else {}),
                **({"uniqueItems": True} if unique else {}),
            },
            inner,
            st.none() | st.integers(min_value=0, max_value=4),
            st.none() | st.integers(min_value=0, max_value=4),
            st.booleans(),
        ),
        st.builds(lambda branches: {"anyOf": branches}, st.lists(inner, min_size=1, max_size=2)),
    ),
    max_leaves=8,
)


@FAST
@given(
    schema=schemas | json_values,
    name=st.sampled_from(["review", "bad name", ""]),
    strict=st.booleans(),
    kind=st.sampled_from(["json_schema", "json_object", "text", "other"]),
)
def test_a_read_format_is_the_one_read_afresh(
    schema: object, name: str, strict: bool, kind: str
) -> None:
    spec = {"type": kind, "json_schema": {"name": name, "schema": schema, "strict": strict}}
    args = ("response_format", "response_format", None)
    expected = _outcome(lambda: read_schema_format(json.loads(json.dumps(spec)), *args))
    for _ in range(2):
        fresh = json.loads(json.dumps(spec))
        assert _outcome(lambda: schema_format(fresh, *args)) == expected  # noqa: B023


# --- schema instances ------------------------------------------------------------------------


def _instance_outcome(build: Any, budget: GenerationBudget) -> tuple[Any, ...]:
    try:
        value: Any = ("ok", build(budget))
    except (SchemaRefused, DeadlinePassed) as exc:
        value = ("refused", type(exc).__name__, str(exc))
    return value, budget.steps, budget.chars


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schema=schemas,
    seed=st.integers(min_value=0, max_value=2**64),
    chars=st.sampled_from([512_000, 200, 40, 6]),
    steps=st.sampled_from([100_000, 1024 * 3 + 2, 1030, 12, 3]),
    truncate_after=st.sampled_from([None, 464, 30, 4]),
    deadline=st.sampled_from([None, "past", "future"]),
    choices=st.integers(min_value=1, max_value=3),
)
def test_a_schema_plan_builds_what_instance_for_builds(
    schema: dict[str, Any],
    seed: int,
    chars: int,
    steps: int,
    truncate_after: int | None,
    deadline: str | None,
    choices: int,
) -> None:
    schema = json.loads(json.dumps(schema))
    plan = plan_for(schema)
    if plan is None:
        return
    when = {None: None, "past": time.monotonic() - 1, "future": time.monotonic() + 3600}[deadline]
    slow = GenerationBudget(chars=chars, steps=steps, deadline=when)
    fast = GenerationBudget(chars=chars, steps=steps, deadline=when)
    for choice in range(choices):  # choices share one budget, as n > 1 answers do
        expected = _instance_outcome(
            lambda b: instance_for(
                schema,
                seed=seed + choice,  # noqa: B023
                budget=b,
                truncate_after=truncate_after,
            ),
            slow,
        )
        got = _instance_outcome(
            lambda b: plan.instance(
                seed=seed + choice,  # noqa: B023
                budget=b,
                truncate_after=truncate_after,
            ),
            fast,
        )
        assert got[1:] == expected[1:]
        assert got[0][0] == expected[0][0]
        if expected[0][0] == "ok":
            assert same_json(got[0][1], expected[0][1])
        else:
            assert got[0] == expected[0]


def test_the_pipeline_schema_is_built_by_the_quick_plan() -> None:
    plan = plan_for(json.loads(json.dumps(SENTIMENT_SCHEMA)))
    assert plan is not None and plan._quick is not None
    assert plan.instance(seed=7) == instance_for(SENTIMENT_SCHEMA, seed=7)


def test_schemas_the_plan_does_not_cover_get_none() -> None:
    assert plan_for({"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}}) is None
    assert plan_for({"anyOf": [{"type": "string"}]}) is None
    assert plan_for({"type": "array", "items": {}, "uniqueItems": True}) is None


# --- keys and surrogates -------------------------------------------------------------------


def test_value_keys_tell_apart_what_json_tells_apart() -> None:
    values = [None, math.nan, 1, 1.0, True, "1", [1], {"a": 1}, {"a": 1.0}]
    keys = [value_key(v) for v in values]
    assert len(set(keys)) == len(values)
    assert value_key("\ud800") is None and value_key(10**30) is None


@FAST
@given(raw=st.binary(max_size=40), inserted=st.sampled_from([b"", b"\\u", b"\xed", b"\\ud8"]))
def test_surrogate_precheck_matches_the_regex(raw: bytes, inserted: bytes) -> None:
    line = raw[: len(raw) // 2] + inserted + raw[len(raw) // 2 :]
    assert _may_hold_surrogate(line) == reference_may_hold_surrogate(line)


# --- whole answers -------------------------------------------------------------------------

# Answers of pipeline-shaped requests, as the engine writes them (blake2b digest, AnswerRandom).
PINNED_CONTENT = [
    '{"sentiment":"neutral","topics":["topics cedar"]}',
    '{"sentiment":"positive","topics":["topics pebble","topics sierra"]}',
    '{"sentiment":"positive","topics":["topics zephyr","topics nova"]}',
]
PINNED_COMPLETION_TOKENS = [13, 17, 17]


def _pipeline_body(row: int) -> dict[str, Any]:
    review = 1_000_000 + row
    text = (
        f'Product: Trail pack {review % 97}\nReview: Review {review}: the "straps" dig in '
        f"after {review % 40 + 1} km; otherwise great. \u00e9t\u00e9 \u2603"
    )
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You label customer reviews of outdoor gear."},
            {"role": "user", "content": text},
        ],
        "temperature": 0,
        "max_tokens": 100,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "review", "schema": SENTIMENT_SCHEMA, "strict": True},
        },
    }


@pytest.mark.parametrize("row", range(len(PINNED_CONTENT)))
def test_pipeline_answers_are_the_pinned_bytes(row: int) -> None:
    for _ in range(2):  # the second time every template-wide fact comes from a cache
        answer = respond(
            "/v1/chat/completions", json.loads(json.dumps(_pipeline_body(row))), created=5
        )
        assert answer["choices"][0]["message"]["content"] == PINNED_CONTENT[row]
        assert answer["usage"]["completion_tokens"] == PINNED_COMPLETION_TOKENS[row]


# --- chat templates read once --------------------------------------------------------------

_TEMPLATE_PARTS: dict[str, list[object]] = {
    "model": ["gpt-4o-mini", "o3-mini", "", 5],
    "n": [1, 2, 0, "x"],
    "max_tokens": [5, 100, 0],
    "max_completion_tokens": [3, 300],
    "temperature": [0, 3],
    "response_format": [
        {"type": "json_object"},
        {"type": "bogus"},
        {
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": SENTIMENT_SCHEMA, "strict": True},
        },
    ],
    "stop": ["e", ["a", "topics"]],
    "seed": [7],
    "reasoning_effort": ["high"],
    "service_tier": ["flex"],
    "tools": [[{"type": "function", "function": {"name": "f", "parameters": SENTIMENT_SCHEMA}}]],
    "tool_choice": ["required"],
}
_MESSAGES = [
    [{"role": "user", "content": "Label this review of a tent."}],
    [{"role": "system", "content": "Answer in json."}, {"role": "user", "content": "A stove."}],
    [],
    [{"role": "wizard", "content": "x"}],
]
templates = st.fixed_dictionaries(
    {}, optional={name: st.sampled_from(values) for name, values in _TEMPLATE_PARTS.items()}
)


def _without_ids(outcome: tuple[Any, ...]) -> tuple[Any, ...]:
    """An answer's outcome with its fresh ids blanked."""
    if outcome[0] != "ok":
        return outcome
    answer = json.loads(json.dumps(outcome[1]))
    answer["id"] = ""
    for choice in answer["choices"]:
        for call in choice["message"].get("tool_calls", []):
            call["id"] = ""
    return ("ok", answer)


def _general_answer(body: dict[str, Any]) -> dict[str, Any]:
    """The answer of the path that reads every parameter of every request."""
    check_body_values(body)
    return answer_chat_completions(body, 5, GenerationBudget())


@FAST
@given(
    picks=st.lists(
        st.tuples(templates, st.integers(min_value=0, max_value=len(_MESSAGES) - 1)),
        min_size=1,
        max_size=6,
    )
)
def test_a_template_read_once_answers_as_reading_every_request(
    picks: list[tuple[dict[str, Any], int]],
) -> None:
    for template, messages in picks * 2:  # the second round reads every template from a cache
        text = json.dumps({**template, "messages": _MESSAGES[messages]})
        expected = _without_ids(_outcome(partial(_general_answer, json.loads(text))))
        got = _outcome(partial(respond, "/v1/chat/completions", json.loads(text), created=5))
        assert _without_ids(got) == expected
