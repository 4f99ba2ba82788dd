"""Plain chat lines are validated through msgspec's typed reading; any file is judged as the full
reading of every line judges it (the same errors, counts, model, tokens and digest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_assets.local_api import validation
from batch_assets.local_api.validation import validate_input_file, validate_part

CHAT = "/v1/chat/completions"

messages = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", 3]), "content": st.text()}
        ),
        max_size=3,
    ),
    st.just([{"role": "user", "content": "hi", "name": "ann"}]),
    st.just([{"role": "user", "content": ["part"]}]),
    st.just([{"content": "no role"}]),
    st.just("not a list"),
)
rest = st.dictionaries(
    st.sampled_from(["temperature", "response_format", "max_tokens", "\u00e9"]),
    st.one_of(
        st.integers(), st.floats(allow_nan=False), st.text(), st.just({"type": "json_object"})
    ),
    max_size=2,
)


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    request: dict = {
        "custom_id": draw(st.sampled_from(["r1", "r2", "r3", 7])),
        "method": draw(st.sampled_from(["POST", "POST", "GET"])),
        "url": draw(st.sampled_from([CHAT, CHAT, "/v1/embeddings"])),
        "body": {
            "model": draw(st.sampled_from(["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", None])),
            "messages": draw(messages),
            **draw(rest),
        },
    }
    if request["body"]["model"] is None:
        del request["body"]["model"]
    raw = json.dumps(request, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    body = b'"body": {'
    return (
        draw(
            st.sampled_from(
                [
                    raw,
                    raw.replace(b'"custom_id"', b'"custom_id": "r9", "custom_id"', 1),  # twice
                    raw.replace(b'"hi"', b'"\\ud800"'),  # a lone surrogate, escaped
                    raw.replace(body, body + b'"x": "\xed\xa0\x80", ', 1),  # one as bytes
                    raw.replace(body, body + b'"x": "\xff", ', 1),  # not UTF-8
                    raw[:-1],  # cut short
                    raw.replace(body, body + b'"x": 1e400, ', 1),  # a number past a double
                ]
            )
        )
        + b"\n"
    )


def _judged(path: Path) -> tuple[object, ...]:
    whole = validate_input_file(path, CHAT)
    part = validate_part(path, CHAT, 0, 2**63)
    return whole, part


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(file=st.lists(lines(), max_size=6))
def test_a_file_is_judged_as_the_full_reading_judges_it(tmp_path: Path, file: list[bytes]) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(file))
    judged = _judged(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validation, "plain_chat_line", lambda raw: None)
        assert judged == _judged(path)


def test_plain_lines_take_the_typed_reading(tmp_path: Path) -> None:
    line = {
        "custom_id": "r1",
        "method": "POST",
        "url": CHAT,
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    raw = json.dumps(line).encode()
    plain = validation.plain_chat_line(raw)
    assert plain is not None and plain.body.input_tokens() == 7
    assert validation.plain_chat_line(raw.replace(b'"hi"', b'"\\u00e9"')) is None
