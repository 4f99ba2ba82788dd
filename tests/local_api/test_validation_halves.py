"""A file validated in two halves has the outcome of one pass, or is sent to one pass."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_assets.local_api.validation import (
    ValidationOutcome,
    joined_outcome,
    line_start_near,
    validate_input_file,
    validate_part,
)

CHAT = "/v1/chat/completions"


def _line(custom_id: str, model: str = "gpt-4o-mini", text: str = "hi") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    request = {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}
    return json.dumps(request).encode() + b"\n"


# Lines a file may hold: good ones, and each kind of line that breaks a rule.
good = st.builds(
    _line,
    st.sampled_from([f"r{i}" for i in range(12)]),
    st.sampled_from(["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]),
    st.text(max_size=30),
)
broken = st.sampled_from(
    [b"not json\n", b"\n", b'{"custom_id": "x"}\n', b"[1]\n", _line("r1").replace(b"POST", b"GET")]
)
files = st.lists(st.one_of(good, good, good, broken), max_size=14)


def _halves(path: Path, cut: float) -> ValidationOutcome | None:
    """The engine's way: a part up to a line start near `cut` of the size, and the rest."""
    middle = line_start_near(path, int(path.stat().st_size * cut))
    first = validate_part(path, CHAT, 0, middle)
    second = validate_part(path, CHAT, middle, 2**63)
    return joined_outcome(path, first, second)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=files, cut=st.floats(min_value=0, max_value=1))
def test_halves_give_the_one_pass_outcome_or_none(
    tmp_path: Path, lines: list[bytes], cut: float
) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(lines))
    whole = validate_input_file(path, CHAT)
    joined = _halves(path, cut)
    if joined is not None:
        assert joined == whole
    clean = all(line.startswith(b'{"custom_id": "r') and b"GET" not in line for line in lines)
    requests = [json.loads(line) for line in lines] if clean else []
    custom_ids = [request["custom_id"] for request in requests]
    models = {request["body"]["model"] for request in requests}
    if clean and lines and len(set(custom_ids)) == len(custom_ids) and len(models) == 1:
        assert joined is not None  # a clean file is never sent to one pass


def test_a_custom_id_in_both_halves_is_left_to_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"".join(_line(f"r{i % 6}") for i in range(10)))
    assert _halves(path, 0.5) is None
    assert validate_input_file(path, CHAT).errors[0]["code"] == "duplicate_custom_id"


def test_two_models_across_the_halves_are_left_to_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "input.jsonl"
    lines = [_line(f"r{i}", "gpt-4o-mini" if i < 5 else "gpt-4o") for i in range(10)]
    path.write_bytes(b"".join(lines))
    assert _halves(path, 0.5) is None
    assert validate_input_file(path, CHAT).errors[0]["code"] == "model_mismatch"


def test_a_line_start_is_found_at_or_after_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"ab\ncd\nef")
    starts = [line_start_near(path, offset) for offset in range(10)]
    assert starts == [0, 3, 3, 3, 6, 6, 6, 8, 8, 8]
