"""Tests for sharding: limits, models, the four inputs, and atomic writes."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from upath import UPath

from batch_assets.core import sharding
from batch_assets.core.limits import DEFAULT_LIMITS, BatchLimits
from batch_assets.core.request_template import RequestTemplate, render_requests
from batch_assets.core.request_validation import RequestValidationError
from batch_assets.core.sharding import (
    Shard,
    ShardWriter,
    shard_jsonl_file,
    shard_request_frame,
    shard_request_lines,
    shard_requests,
)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"


def request(index: int, model: str = "gpt-4o-mini", text: str = "hello") -> dict[str, Any]:
    return {
        "custom_id": f"req-{index}",
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": f"{text} {index} é"}]},
    }


def embedding(index: int, inputs: list[str]) -> dict[str, Any]:
    return {
        "custom_id": f"emb-{index}",
        "method": "POST",
        "url": EMBEDDINGS,
        "body": {"model": "text-embedding-3-small", "input": inputs},
    }


def compact_json(request: dict[str, Any]) -> str:
    """A request as shard_requests writes it."""
    return json.dumps(request, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def read_shard(shard: Shard) -> list[dict[str, Any]]:
    lines = UPath(shard.url).read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    return [json.loads(line) for line in lines[:-1]]


def check_shards(shards: list[Shard], limits: BatchLimits) -> list[dict[str, Any]]:
    """Every shard file agrees with its record and the limits; return all requests in order."""
    requests: list[dict[str, Any]] = []
    for shard in shards:
        data = UPath(shard.url).read_bytes()
        assert data.endswith(b"\n")
        assert shard.n_bytes == len(data) <= limits.max_bytes
        assert shard.sha256 == hashlib.sha256(data).hexdigest()
        lines = read_shard(shard)
        assert shard.n_requests == len(lines) <= limits.max_requests
        assert {line["body"].get("model") for line in lines} == {shard.model}
        if shard.endpoint == EMBEDDINGS:
            inputs = sum(len(line["body"]["input"]) for line in lines)
            assert shard.n_embedding_inputs == inputs <= limits.max_embedding_inputs
        requests.extend(lines)
    return requests


def test_split_by_count(tmp_path: Path) -> None:
    limits = BatchLimits(max_requests=3)
    requests = [request(i) for i in range(10)]
    shards = shard_requests(requests, tmp_path, endpoint=CHAT, limits=limits)
    assert [s.n_requests for s in shards] == [3, 3, 3, 1]
    assert [UPath(s.url).name for s in shards] == [f"shard-0000{i}.jsonl" for i in range(4)]
    assert check_shards(shards, limits) == requests


def test_split_by_bytes(tmp_path: Path) -> None:
    requests = [request(i, text="x" * (i * 10)) for i in range(12)]
    sizes = [len(compact_json(r).encode()) + 1 for r in requests]
    limits = BatchLimits(max_bytes=max(sizes) * 2)
    shards = shard_requests(requests, tmp_path, endpoint=CHAT, limits=limits)
    assert len(shards) > 2
    assert check_shards(shards, limits) == requests


def test_a_shard_larger_than_one_read_is_hashed_whole(tmp_path: Path) -> None:
    """The digest is taken over every piece the shard is read back in, not the first."""
    requests = [request(i, text="x" * 900) for i in range(12_000)]  # about 11 MB, one shard
    shards = shard_requests(requests, tmp_path, endpoint=CHAT)
    assert len(shards) == 1 and shards[0].n_bytes > 2 * sharding._HASH_READ_BYTES
    assert check_shards(shards, DEFAULT_LIMITS) == requests


def test_split_by_model(tmp_path: Path) -> None:
    requests = [request(i, model=f"m{i % 3}") for i in range(9)]
    shards = shard_requests(requests, tmp_path, endpoint=CHAT)
    assert sorted(s.model for s in shards) == ["m0", "m1", "m2"]
    got = check_shards(shards, BatchLimits())
    assert sorted(got, key=lambda r: r["custom_id"]) == sorted(
        requests, key=lambda r: r["custom_id"]
    )
    for shard in shards:  # input order is kept within a model
        ids = [int(r["custom_id"][4:]) for r in read_shard(shard)]
        assert ids == sorted(ids)


def test_split_by_embedding_inputs(tmp_path: Path) -> None:
    limits = BatchLimits(max_embedding_inputs=7)
    requests = [embedding(i, [f"t{j}" for j in range(3)]) for i in range(7)]
    shards = shard_requests(requests, tmp_path, endpoint=EMBEDDINGS, limits=limits)
    assert [s.n_embedding_inputs for s in shards] == [6, 6, 6, 3]
    assert check_shards(shards, limits) == requests


def test_limits_together(tmp_path: Path) -> None:
    limits = BatchLimits(max_requests=4, max_bytes=700)
    requests = [request(i, model=f"m{i % 2}", text="y" * (i % 5) * 30) for i in range(30)]
    shards = shard_requests(requests, tmp_path, endpoint=CHAT, limits=limits)
    got = check_shards(shards, limits)
    assert sorted(r["custom_id"] for r in got) == sorted(r["custom_id"] for r in requests)


def _inputs(
    kind: str, requests: list[dict[str, Any]], tmp_path: Path
) -> tuple[Any, Any]:  # (function, first argument)
    lines = [compact_json(r) for r in requests]
    if kind == "dicts":
        return shard_requests, iter(requests)
    if kind == "lines":
        return shard_request_lines, iter(lines)
    if kind == "series":
        return shard_request_lines, pl.Series(lines)
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return shard_jsonl_file, path


@pytest.mark.parametrize("kind", ["dicts", "lines", "series", "file"])
def test_every_input_gives_the_same_shards(tmp_path: Path, kind: str) -> None:
    limits = BatchLimits(max_requests=5, max_bytes=900)
    requests = [request(i, text="z" * (i % 7) * 20) for i in range(23)]
    function, source = _inputs(kind, requests, tmp_path)
    shards = function(source, tmp_path / "out", endpoint=CHAT, limits=limits)
    assert check_shards(shards, limits) == requests
    reference = shard_requests(requests, tmp_path / "ref", endpoint=CHAT, limits=limits)
    assert [(s.n_requests, s.n_bytes, s.sha256) for s in shards] == [
        (s.n_requests, s.n_bytes, s.sha256) for s in reference
    ]


def test_file_input_in_small_chunks(tmp_path: Path) -> None:
    requests = [request(i, model=f"m{i % 2}") for i in range(40)]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\r\n" for r in requests), encoding="utf-8")
    limits = BatchLimits(max_requests=7)
    shards = shard_jsonl_file(path, tmp_path / "out", endpoint=CHAT, limits=limits, chunk_bytes=500)
    got = check_shards(shards, limits)
    assert sorted(r["custom_id"] for r in got) == sorted(r["custom_id"] for r in requests)
    assert all(b"\r" not in UPath(s.url).read_bytes() for s in shards)


def test_frame_from_a_template(tmp_path: Path) -> None:
    df = pl.DataFrame({"id": [f"r{i}" for i in range(11)], "text": ['a "q"\n'] * 11})
    template = RequestTemplate(
        endpoint=EMBEDDINGS,
        model="text-embedding-3-small",
        user_template="{text}",
        custom_id_column="id",
    )
    frame = render_requests(df, template)
    limits = BatchLimits(max_requests=4, max_embedding_inputs=3)
    shards = shard_request_frame(
        frame, tmp_path, endpoint=EMBEDDINGS, model=template.model, limits=limits
    )
    assert [s.n_requests for s in shards] == [3, 3, 3, 2]
    assert [s.n_embedding_inputs for s in shards] == [3, 3, 3, 2]
    got = [line for shard in shards for line in read_shard(shard)]
    assert [r["custom_id"] for r in got] == df["id"].to_list()


@pytest.mark.parametrize(
    ("ids", "lines", "words"),
    [
        (["a", "a"], ['{"x": 1}', '{"x": 2}'], "more than once"),
        (["a", None], ['{"x": 1}', '{"x": 2}'], "missing"),
        (["a", "b"], ['{"x": 1}', "y" * 100], "max_bytes"),
    ],
)
def test_frame_checks(tmp_path: Path, ids: list[str | None], lines: list[str], words: str) -> None:
    frame = pl.DataFrame({"custom_id": ids, "request": lines})
    with pytest.raises(RequestValidationError, match=words) as caught:
        shard_request_frame(
            frame, tmp_path, endpoint=CHAT, model="m", limits=BatchLimits(max_bytes=50)
        )
    assert caught.value.line == 2
    assert list(tmp_path.iterdir()) == []


def previous_run(out: Path) -> dict[str, bytes]:
    """Files an earlier materialization left: its shards and an unrelated file."""
    shard_requests(
        [request(i) for i in range(6)], out, endpoint=CHAT, limits=BatchLimits(max_requests=2)
    )
    (out / "notes.txt").write_text("keep me")
    return {path.name: path.read_bytes() for path in out.iterdir()}


def failing_requests() -> Iterator[dict[str, Any]]:
    for i in range(20):
        yield request(i)
    yield request(20) | {"url": EMBEDDINGS}
    yield from (request(i) for i in range(21, 30))


@pytest.mark.parametrize("kind", ["dicts", "lines", "series", "file"])
def test_an_error_leaves_no_shard_and_keeps_earlier_files(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "out"
    before = previous_run(out)
    requests = list(failing_requests())
    function, source = _inputs(kind, requests, tmp_path)
    with pytest.raises(RequestValidationError) as caught:
        function(source, out, endpoint=CHAT, limits=BatchLimits(max_requests=3))
    assert (caught.value.line, caught.value.field) == (21, "url")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_an_exception_from_the_generator_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = previous_run(out)

    def broken() -> Iterator[dict[str, Any]]:
        yield from (request(i) for i in range(10))
        raise ConnectionError("upstream went away")

    with pytest.raises(ConnectionError):
        shard_requests(broken(), out, endpoint=CHAT, limits=BatchLimits(max_requests=3))
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_success_replaces_the_earlier_shard_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    previous_run(out)
    shards = shard_requests([request(i) for i in range(3)], out, endpoint=CHAT)
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt", "shard-00000.jsonl"]
    assert read_shard(shards[0]) == [request(i) for i in range(3)]


def test_prefixes_keep_shard_sets_apart(tmp_path: Path) -> None:
    shard_requests([request(0)], tmp_path, endpoint=CHAT, prefix="a")
    shard_requests([request(1)], tmp_path, endpoint=CHAT, prefix="b")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-00000.jsonl", "b-00000.jsonl"]
    with pytest.raises(ValueError, match="prefix"):
        ShardWriter(tmp_path, endpoint=CHAT, prefix="../x")


@pytest.mark.parametrize(
    ("requests", "line", "words"),
    [
        ([request(0), request(0)], 2, "more than once"),
        ([request(0), request(1) | {"method": "GET"}], 2, "'GET'"),
        ([request(0), {**request(1), "body": {"model": "m", "t": float("nan")}}], 2, "JSON"),
        ([request(0), {**request(1), "body": {"model": "m", "t": {1, 2}}}], 2, "JSON"),
        ([request(0), {**request(1), "body": {"model": "m", "t": "\ud800"}}], 2, "surrogate"),
        ([request(0), request(1, text="w" * 400)], 2, "max_bytes"),
        ([], None, "empty"),
    ],
)
def test_bad_dicts(
    tmp_path: Path, requests: list[dict[str, Any]], line: int | None, words: str
) -> None:
    with pytest.raises(RequestValidationError, match=words) as caught:
        shard_requests(requests, tmp_path, endpoint=CHAT, limits=BatchLimits(max_bytes=300))
    assert caught.value.line == line
    assert list(tmp_path.iterdir()) == []


def test_iterator_input_is_streamed(tmp_path: Path) -> None:
    """Requests are written as they come: memory holds the custom_ids, not the requests."""
    padding = "p" * 2000

    def requests() -> Iterator[dict[str, Any]]:
        for i in range(10_000):
            yield request(i, text=padding)

    tracemalloc.start()
    try:
        shards = shard_requests(
            requests(), tmp_path, endpoint=CHAT, limits=BatchLimits(max_requests=3000)
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(s.n_requests for s in shards) == 10_000
    assert sum(s.n_bytes for s in shards) > 20_000_000
    assert peak < 8_000_000
