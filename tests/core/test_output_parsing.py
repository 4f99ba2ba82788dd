"""Tests for output and error file parsing, against a json.loads reference."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from batch_assets.core.output_parsing import (
    RESULT_SCHEMA,
    decode_json_answers,
    empty_results,
    json_schema_to_dtype,
    parse_batch_file,
    parse_batch_files,
    scan_batch_file,
)
from tests.core.test_output_parsing_properties import reference_row


def line(custom_id: str, body: dict[str, Any] | None, status: int = 200, **error: Any) -> dict:
    response = (
        None
        if body is None
        else {"status_code": status, "request_id": f"req_{custom_id}", "body": body}
    )
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": response,
        "error": error or None,
    }


def chat_body(content: str | None, *, finish: str = "stop", refusal: str | None = None) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": refusal,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 7,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
        },
        "system_fingerprint": "fp_1",
    }


def responses_body(*texts: str, status: str = "completed", reason: str | None = None) -> dict:
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": "gpt-4o",
        "incomplete_details": None if reason is None else {"reason": reason},
        "output": [
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "no"}],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": t, "annotations": []} for t in texts],
            },
            {"type": "function_call", "name": "f", "arguments": "{}"},
        ],
        "usage": {
            "input_tokens": 5,
            "output_tokens": 9,
            "total_tokens": 14,
            "input_tokens_details": {"cached_tokens": 1},
            "output_tokens_details": {"reasoning_tokens": 4},
        },
        "error": None,
    }


def embedding_body(vector: list[float]) -> dict:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": vector}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }


def http_error_body(code: str | None, message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def write(tmp_path: Path, lines: list[dict], name: str = "output.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), "utf-8")
    return path


def reference(path: Path, batch_id: str | None) -> list[dict[str, Any]]:
    """The obvious slow parse: json.loads per line, plain dict walking."""
    lines = path.read_text("utf-8").split("\n")[:-1]  # not splitlines: it splits on U+2028
    return [reference_row(json.loads(raw), batch_id) for raw in lines]


def every_kind() -> list[dict]:
    return [
        line("chat", chat_body('{"label": "pos"}')),
        line("chat-refusal", chat_body(None, refusal="I can't help with that.")),
        line("chat-length", chat_body('{"label": "po', finish="length")),
        line("resp", responses_body("Hello ", "world")),
        line(
            "resp-incomplete",
            responses_body("partial", status="incomplete", reason="max_output_tokens"),
        ),
        line("emb", embedding_body([0.25, -1.5, 3.0])),
        line(
            "completion",
            {"choices": [{"text": "done", "index": 0, "finish_reason": "stop"}], "model": "m"},
        ),
        line(
            "http-429", http_error_body("rate_limit_exceeded", "Slow down", "requests"), status=429
        ),
        line("http-400", http_error_body(None, "Bad request"), status=400),
        line(
            "expired",
            None,
            code="batch_expired",
            message="This request could not be executed before the completion window expired.",
        ),
        line("cancelled", None, code="batch_cancelled", message="cancelled"),
    ]


def test_every_kind_of_line_matches_the_reference(tmp_path: Path) -> None:
    path = write(tmp_path, every_kind())
    frame = parse_batch_file(path, batch_id="batch_1")
    assert frame.schema == pl.Schema(RESULT_SCHEMA)
    assert frame.to_dicts() == reference(path, "batch_1")


def test_typed_columns(tmp_path: Path) -> None:
    frame = parse_batch_file(write(tmp_path, every_kind()), batch_id="b").rows_by_key(
        "custom_id", named=True, unique=True
    )
    assert frame["chat"]["answer"] == '{"label": "pos"}'
    assert frame["chat"]["status_code"] == 200
    assert (frame["chat"]["input_tokens"], frame["chat"]["output_tokens"]) == (11, 7)
    assert (frame["chat"]["cached_tokens"], frame["chat"]["reasoning_tokens"]) == (3, 2)
    assert frame["chat-refusal"]["refusal"] == "I can't help with that."
    assert frame["resp"]["answer"] == "Hello world"
    assert (frame["resp"]["input_tokens"], frame["resp"]["output_tokens"]) == (5, 9)
    assert frame["resp-incomplete"]["finish_reason"] == "max_output_tokens"
    assert frame["emb"]["embedding"] == [0.25, -1.5, 3.0]
    assert frame["completion"]["answer"] == "done"
    assert frame["http-429"]["error_code"] == "rate_limit_exceeded"
    assert frame["http-400"]["error_type"] == "invalid_request_error"
    assert frame["http-400"]["error_message"] == "Bad request"
    assert frame["expired"]["status_code"] is None
    assert frame["expired"]["error_code"] == "batch_expired"


@pytest.mark.parametrize("seed", range(4))
def test_random_outputs_match_the_reference(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    pool = [chr(c) for c in range(0, 0x250)] + ["😀", "\u2028", '"', "\\", "日"]

    def text() -> str:
        return "".join(rng.choice(pool) for _ in range(rng.randrange(40)))

    makers = [
        lambda i: line(
            f"c{i}",
            chat_body(rng.choice([text(), None, ""]), finish=rng.choice(["stop", "length"])),
        ),
        lambda i: line(f"r{i}", responses_body(*[text() for _ in range(rng.randrange(3))])),
        lambda i: line(
            f"e{i}", embedding_body([rng.uniform(-1, 1) for _ in range(rng.randrange(1, 5))])
        ),
        lambda i: line(
            f"h{i}",
            http_error_body(rng.choice([None, "server_error"]), text()),
            status=rng.choice([400, 500]),
        ),
        lambda i: line(
            f"x{i}", None, code=rng.choice(["batch_expired", "request_timeout"]), message=text()
        ),
    ]
    lines = [rng.choice(makers)(i) for i in range(300)]
    path = write(tmp_path, lines)
    assert parse_batch_file(path, batch_id=None).to_dicts() == reference(path, None)


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_missing_or_empty_file_gives_an_empty_frame(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "errors.jsonl"
    if content is not None:
        path.write_text(content)
    frame = parse_batch_file(path, batch_id="b")
    assert frame.height == 0
    assert frame.schema == pl.Schema(RESULT_SCHEMA)
    assert parse_batch_file(None).schema == empty_results().schema


def test_scan_streams_to_parquet(tmp_path: Path) -> None:
    path = write(tmp_path, every_kind())
    scan_batch_file(path, batch_id="b").sink_parquet(tmp_path / "out.parquet")
    assert pl.read_parquet(tmp_path / "out.parquet").equals(parse_batch_file(path, batch_id="b"))


def test_several_batches(tmp_path: Path) -> None:
    out_a = write(tmp_path, every_kind()[:3], "a.jsonl")
    err_a = write(tmp_path, every_kind()[-2:], "a_err.jsonl")
    out_b = write(tmp_path, every_kind()[3:5], "b.jsonl")
    frame = parse_batch_files({"batch_a": [out_a, err_a, None], "batch_b": [out_b]})
    assert frame.height == 7
    assert frame.filter(pl.col("batch_id") == "batch_a").height == 5
    assert parse_batch_files({}).schema == pl.Schema(RESULT_SCHEMA)


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["pos", "neg"]},
        "score": {"type": "integer"},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "$defs": {
        "tag": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "w": {"type": "number"}},
        }
    },
}


def test_json_schema_to_dtype() -> None:
    assert json_schema_to_dtype(SCHEMA) == pl.Struct(
        {
            "label": pl.String,
            "score": pl.Int64,
            "tags": pl.List(pl.Struct({"name": pl.String, "w": pl.Float64})),
            "note": pl.String,
        }
    )
    assert json_schema_to_dtype({"type": ["boolean", "null"]}) == pl.Boolean


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"$ref": "#/$defs/a", "$defs": {"a": {"type": "array", "items": {"$ref": "#/$defs/a"}}}},
        {"$ref": "other.json#/x"},
        {"type": ["string", "integer"]},
    ],
)
def test_json_schema_without_a_dtype(schema: dict) -> None:
    with pytest.raises(ValueError, match="dtype"):
        json_schema_to_dtype(schema)


def test_decode_json_answers() -> None:
    answers = [
        '{"label": "pos", "score": 3, "tags": [{"name": "a", "w": 0.5}], "note": null}',
        '{"label": "neg", "sco',  # truncated at max_tokens
        None,
        "",
        "not json",
        '{"label": "pos", "score": "three"}',  # does not fit the type
        '{"label": "neg", "score": 1, "extra": true}',
    ]
    frame = decode_json_answers(pl.DataFrame({"answer": answers}), schema=SCHEMA)
    decoded = frame["answer_json"].to_list()
    assert decoded[0] == {
        "label": "pos",
        "score": 3,
        "tags": [{"name": "a", "w": 0.5}],
        "note": None,
    }
    assert decoded[1:6] == [None] * 5
    assert decoded[6] == {"label": "neg", "score": 1, "tags": None, "note": None}
    assert frame.height == len(answers)


def test_decode_json_answers_needs_a_type() -> None:
    with pytest.raises(ValueError, match="schema"):
        decode_json_answers(pl.DataFrame({"answer": ["{}"]}))
    frame = decode_json_answers(
        pl.DataFrame({"answer": ['{"a": 1}']}), dtype=pl.Struct({"a": pl.Int64})
    )
    assert frame["answer_json"].to_list() == [{"a": 1}]


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "output.jsonl"
    path.write_text(json.dumps(line("a", None)) + "\n\n" + '{"custom_id": "b", \n')
    with pytest.raises(ValueError, match=r"output\.jsonl: line 3 is not valid JSON"):
        parse_batch_file(path)


@pytest.mark.parametrize(
    ("value", "kind"), [("[1, 2]", "an array"), ("null", "null"), ('"answer"', '"answer"')]
)
def test_a_line_that_is_not_an_object_is_named(tmp_path: Path, value: str, kind: str) -> None:
    path = tmp_path / "output.jsonl"
    path.write_text(json.dumps(line("a", None)) + "\n" + value + "\n")
    with pytest.raises(ValueError, match=rf"output\.jsonl: line 2 is {kind}, not a JSON object"):
        parse_batch_file(path)


def test_last_line_without_line_end_and_wrong_types(tmp_path: Path) -> None:
    path = tmp_path / "output.jsonl"
    odd = line("b", chat_body("hi")) | {"response": {"status_code": "200", "body": []}}
    path.write_text(json.dumps(line("a", chat_body("x"))) + "\r\n" + json.dumps(odd))
    frame = parse_batch_file(path, batch_id="b")
    assert frame["custom_id"].to_list() == ["a", "b"]
    assert frame["answer"].to_list() == ["x", None]
    assert frame["status_code"].to_list() == [200, None]
