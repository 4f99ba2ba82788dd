"""Tests for the request plan: cache hits left out, duplicates folded, answers fanned out."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest
from upath import UPath

from batch_assets.core import request_plan, storage
from batch_assets.core.costs import DEFAULT_PRICES
from batch_assets.core.limits import DEFAULT_LIMITS, EMBEDDINGS, BatchLimits
from batch_assets.core.output_parsing import RESULT_SCHEMA
from batch_assets.core.request_cache import (
    CACHE_KEY,
    CACHED,
    CACHED_AT,
    ENTRY_SCHEMA,
    PROVENANCE_SCHEMA,
    RequestCache,
    request_key,
)
from batch_assets.core.request_plan import (
    SENT_AS,
    RequestPlan,
    apply_plan,
    estimate_only,
    plan_requests,
    planned_ids,
    read_plan,
    shard_url_keys,
)
from batch_assets.core.sharding import Shard, ShardWriter, shard_requests
from tests.core.answers import CHAT, MINI, NOW, body, result, results

# Six requests, three distinct: r2 and r4 ask what r0 asks, r5 what r3 asks.
TEXTS = {"r0": "a", "r1": "b", "r2": "a", "r3": "c", "r4": "a", "r5": "c"}


def request(custom_id: str, text: str, model: str = MINI) -> dict[str, Any]:
    """A chat request line asking `text`."""
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body(text, model)}


def input_shards(folder: Path, requests: Iterable[dict[str, Any]]) -> list[Shard]:
    """The requests as input shards of two requests each (so duplicates span shards)."""
    return shard_requests(
        requests, folder / "requests", endpoint=CHAT, limits=BatchLimits(max_requests=2)
    )


def shard_lines(shards: Iterable[Shard]) -> list[dict[str, Any]]:
    """Every request line of the shard files, in order."""
    lines: list[dict[str, Any]] = []
    for shard in shards:
        text = UPath(shard.url).read_text(encoding="utf-8")
        assert text.endswith("\n")
        lines += [json.loads(line) for line in text.splitlines()]
        assert len(text.splitlines()) == shard.n_requests
    return lines


def sent_ids(plan: RequestPlan) -> list[str]:
    """The custom_ids the plan's shards send."""
    return [line["custom_id"] for line in shard_lines(plan.shards)]


def shard_files(folder: Path) -> list[str]:
    """The names of the shard files in `folder`."""
    return sorted(path.name for path in folder.glob("*.jsonl")) if folder.exists() else []


def remember(cache: RequestCache, answers: dict[str, str], name: str = "earlier") -> None:
    """Store answers to the questions `answers` maps, as an earlier submission would."""
    ids = [f"old-{text}" for text in answers]
    keys = pl.DataFrame(
        {"custom_id": ids, CACHE_KEY: [request_key(CHAT, body(text)) for text in answers]}
    )
    answered = results(*(result(i, a) for i, a in zip(ids, answers.values(), strict=True)))
    assert cache.store(answered, keys, name) == len(answers)


def plan_for(
    shards: list[Shard], out_dir: Path, cache: RequestCache, **options: Any
) -> RequestPlan:
    """plan_requests with the default limits and prices, at NOW unless `now` is given."""
    return plan_requests(
        shards,
        UPath(out_dir),
        endpoint=CHAT,
        limits=DEFAULT_LIMITS,
        cache=cache,
        prices=DEFAULT_PRICES,
        **{"now": NOW, **options},
    )


def by_id(frame: pl.DataFrame, column: str) -> dict[str, Any]:
    """`column` of each custom_id of the frame."""
    return dict(zip(frame["custom_id"], frame[column], strict=True))


@pytest.fixture
def cache(tmp_path: Path) -> RequestCache:
    """An empty cache in a folder of its own."""
    return RequestCache(UPath(tmp_path / "cache"))


@pytest.fixture
def shards(tmp_path: Path) -> list[Shard]:
    """The TEXTS requests as input shards."""
    return input_shards(tmp_path, (request(i, text) for i, text in TEXTS.items()))


# shard_url_keys


def test_shard_url_keys_key_each_line_by_its_body_alone(tmp_path: Path) -> None:
    path = tmp_path / "hand.jsonl"
    lines = [
        {"custom_id": "x", "method": "POST", "url": CHAT, "body": body("a")},
        {"body": dict(reversed(body("a").items())), "custom_id": "y"},
        {"custom_id": "z", "body": body("b")},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    keys = shard_url_keys(path.as_uri(), CHAT)
    assert keys["custom_id"].to_list() == ["x", "y", "z"]
    assert keys[CACHE_KEY].to_list() == [request_key(CHAT, body(t)) for t in ("a", "a", "b")]


# plan_requests: folding


def test_identical_requests_are_sent_once(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    plan = plan_for(shards, tmp_path / "submit", cache)
    assert sent_ids(plan) == ["r0", "r1", "r3"]
    assert (plan.requests, plan.submitted) == (6, 3)
    assert (plan.duplicates_folded, plan.cache_hits, plan.saved_usd) == (3, 0, 0.0)
    assert not plan.full_shards
    sent = {line["custom_id"]: line for line in shard_lines(plan.shards)}
    assert sent == {i: request(i, TEXTS[i]) for i in ("r0", "r1", "r3")}
    # the first shard is sent whole, as it is; the second's one line to send, in a new shard
    assert [UPath(s.url).parent.name for s in plan.shards] == ["requests", "submit"]


def test_the_plan_maps_each_folded_request_to_the_one_sent(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    planned, cached = read_plan(plan_for(shards, tmp_path / "submit", cache))
    assert by_id(planned, SENT_AS) == {
        "r0": "r0",
        "r1": "r1",
        "r2": "r0",
        "r3": "r3",
        "r4": "r0",
        "r5": "r3",
    }
    assert by_id(planned, CACHE_KEY) == {i: request_key(CHAT, body(t)) for i, t in TEXTS.items()}
    assert cached.height == 0


def test_the_same_question_to_another_model_is_not_folded(
    tmp_path: Path, cache: RequestCache
) -> None:
    requests = [request("a", "q"), request("b", "q", model="gpt-4o"), request("c", "q")]
    plan = plan_for(input_shards(tmp_path, requests), tmp_path / "submit", cache)
    assert sorted(sent_ids(plan)) == ["a", "b"]
    assert sorted(shard.model or "" for shard in plan.shards) == ["gpt-4o", MINI]
    assert plan.duplicates_folded == 1
    assert sorted((e.model, e.requests) for e in plan.estimates) == [("gpt-4o", 1), (MINI, 1)]


def test_the_estimate_is_of_the_lines_sent(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    plan = plan_for(shards, tmp_path / "submit", cache)
    assert [(e.model, e.requests) for e in plan.estimates] == [(MINI, 3)]
    chars = sum(len(UPath(s.url).read_text(encoding="utf-8")) for s in plan.shards)
    assert dict(plan.sent_chars) == {MINI: chars}


def test_embedding_requests_are_folded_and_their_inputs_counted(
    tmp_path: Path, cache: RequestCache
) -> None:
    model = "text-embedding-3-small"

    def embedding(custom_id: str, inputs: list[str]) -> dict[str, Any]:
        """An embeddings request line."""
        value = {"model": model, "input": inputs}
        return {"custom_id": custom_id, "method": "POST", "url": EMBEDDINGS, "body": value}

    requests = [embedding("e0", ["x", "y"]), embedding("e1", ["z"]), embedding("e2", ["x", "y"])]
    shards = shard_requests(requests, tmp_path / "requests", endpoint=EMBEDDINGS)
    plan = plan_requests(
        shards,
        UPath(tmp_path / "submit"),
        endpoint=EMBEDDINGS,
        limits=DEFAULT_LIMITS,
        cache=cache,
        prices=DEFAULT_PRICES,
    )
    assert [line["custom_id"] for line in shard_lines(plan.shards)] == ["e0", "e1"]
    assert sum(shard.n_embedding_inputs for shard in plan.shards) == 3
    assert plan.duplicates_folded == 1


# plan_requests: cache hits


def test_answered_requests_are_not_sent(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    remember(cache, {"b": "answer b", "c": "answer c"})
    plan = plan_for(shards, tmp_path / "submit", cache)
    assert sent_ids(plan) == ["r0"]
    assert (plan.cache_hits, plan.duplicates_folded, plan.submitted) == (3, 2, 1)
    planned, cached = read_plan(plan)
    assert by_id(planned, SENT_AS) == {"r0": "r0", "r2": "r0", "r4": "r0"}
    assert by_id(cached, "answer") == {"r1": "answer b", "r3": "answer c", "r5": "answer c"}
    assert by_id(cached, "batch_request_id") == {
        "r1": "br-old-b",
        "r3": "br-old-c",
        "r5": "br-old-c",
    }
    assert cached[CACHED_AT].is_not_null().all()
    # Each hit was 1000 input and 500 output tokens of gpt-4o-mini, at half price.
    assert plan.saved_usd == pytest.approx(3 * (1000 * 0.15 + 500 * 0.60) / 1e6 / 2)
    assert [(e.model, e.requests) for e in plan.estimates] == [(MINI, 1)]


def test_nothing_is_sent_when_the_cache_answers_everything(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    remember(cache, {"a": "answer a", "b": "answer b", "c": "answer c"})
    plan = plan_for(shards, tmp_path / "submit", cache)
    assert plan.shards == ()
    assert (plan.submitted, plan.cache_hits, plan.duplicates_folded) == (0, 6, 0)
    assert plan.estimates == ()
    assert shard_files(tmp_path / "submit") == []
    planned, cached = read_plan(plan)
    assert planned.height == 0
    assert by_id(cached, "answer") == {i: f"answer {t}" for i, t in TEXTS.items()}


def test_without_reuse_nothing_is_a_hit_but_duplicates_still_fold(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    remember(cache, {"a": "answer a", "b": "answer b", "c": "answer c"})
    plan = plan_for(shards, tmp_path / "submit", cache, reuse=False)
    assert sent_ids(plan) == ["r0", "r1", "r3"]
    assert (plan.cache_hits, plan.duplicates_folded, plan.saved_usd) == (0, 3, 0.0)
    assert read_plan(plan)[1].height == 0


def test_answers_older_than_max_age_are_not_hits(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    stored = {CACHE_KEY: request_key(CHAT, body("b")), "status_code": 200, "answer": "answer b"}
    stored[CACHED_AT] = NOW - timedelta(days=2)
    storage.write_parquet(pl.DataFrame([stored], schema=ENTRY_SCHEMA), cache.segment("earlier"))
    stale = plan_for(shards, tmp_path / "stale", cache, max_age=timedelta(days=1))
    assert (stale.cache_hits, stale.submitted) == (0, 3)
    fresh = plan_for(shards, tmp_path / "fresh", cache, max_age=timedelta(days=3))
    assert (fresh.cache_hits, fresh.submitted) == (1, 2)


# apply_plan and planned_ids


def applied(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The cache answers "b"; of the two sent, r0 is answered and r3 fails."""
    remember(cache, {"b": "answer b"})
    plan = plan_for(shards, tmp_path / "submit", cache)
    assert sent_ids(plan) == ["r0", "r3"]
    return apply_plan(plan, results(result("r0", "answer a")), results(result("r3", None, 500)))


def test_every_request_gets_one_row_of_output_or_errors(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    output, errors = applied(tmp_path, cache, shards)
    assert sorted(output["custom_id"]) == ["r0", "r1", "r2", "r4"]
    assert sorted(errors["custom_id"]) == ["r3", "r5"]
    for frame in (output, errors):
        assert frame.schema == pl.Schema({**RESULT_SCHEMA, **PROVENANCE_SCHEMA})


def test_folded_requests_carry_the_answer_of_the_one_sent(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    output, _ = applied(tmp_path, cache, shards)
    rows = {row["custom_id"]: row for row in output.iter_rows(named=True)}
    for folded in ("r2", "r4"):
        assert {**rows[folded], "custom_id": "r0"} == rows["r0"]
    assert rows["r0"]["answer"] == "answer a"
    assert rows["r0"]["batch_request_id"] == "br-r0"
    assert [rows[i][CACHED] for i in ("r0", "r2", "r4")] == [False] * 3
    assert [rows[i][CACHED_AT] for i in ("r0", "r2", "r4")] == [None] * 3


def test_cache_hits_carry_the_stored_answer_marked_cached(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    before = datetime.now(UTC)
    output, _ = applied(tmp_path, cache, shards)
    (hit,) = output.filter(pl.col("custom_id") == "r1").iter_rows(named=True)
    assert (hit["answer"], hit["batch_request_id"], hit["status_code"]) == (
        "answer b",
        "br-old-b",
        200,
    )
    assert hit[CACHED] is True
    assert hit[CACHED_AT] >= before


def test_errors_of_a_sent_request_are_fanned_out_to_its_duplicates(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    _, errors = applied(tmp_path, cache, shards)
    rows = {row["custom_id"]: row for row in errors.iter_rows(named=True)}
    assert {**rows["r5"], "custom_id": "r3"} == rows["r3"]
    assert rows["r5"]["error_code"] == "server_error"
    assert rows["r5"][CACHED] is False


def test_when_nothing_is_sent_every_answer_comes_from_the_cache(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    remember(cache, {"a": "answer a", "b": "answer b", "c": "answer c"})
    plan = plan_for(shards, tmp_path / "submit", cache)
    output, errors = apply_plan(plan, results(), results())
    assert by_id(output, "answer") == {i: f"answer {t}" for i, t in TEXTS.items()}
    assert output[CACHED].all()
    assert errors.height == 0


def test_planned_ids_are_the_folded_and_the_cached(
    tmp_path: Path, cache: RequestCache, shards: list[Shard]
) -> None:
    remember(cache, {"b": "answer b"})
    plan = plan_for(shards, tmp_path / "submit", cache)
    assert sorted(planned_ids(plan)["custom_id"]) == ["r1", "r2", "r4", "r5"]
    assert planned_ids(plan).columns == ["custom_id"]


def test_without_a_plan_frames_only_gain_the_provenance_columns(shards: list[Shard]) -> None:
    output = results(result("r0", "answer a"), result("r1", "answer b"))
    errors = results(result("r3", None, 500))
    full = estimate_only(shards, endpoint=CHAT, prices=DEFAULT_PRICES)
    for plan in (None, full):
        got_output, got_errors = apply_plan(plan, output, errors)
        for got, given in ((got_output, output), (got_errors, errors)):
            assert got.columns == [*given.columns, CACHED, CACHED_AT]
            assert got.select(given.columns).equals(given)
            assert got[CACHED].to_list() == [False] * given.height
            assert got[CACHED_AT].null_count() == given.height


# estimate_only


def test_estimate_only_keeps_the_shards_and_prices_every_request(tmp_path: Path) -> None:
    requests = [request(f"r{i}", "same", model=MINI if i % 3 else "gpt-4o") for i in range(7)]
    shards = input_shards(tmp_path, requests)
    before = [UPath(shard.url).read_bytes() for shard in shards]
    plan = estimate_only(shards, endpoint=CHAT, prices=DEFAULT_PRICES)
    assert plan.shards == tuple(shards)
    assert [UPath(shard.url).read_bytes() for shard in shards] == before
    assert plan.full_shards
    assert (plan.requests, plan.submitted, plan.cache_hits, plan.duplicates_folded) == (7, 7, 0, 0)
    assert [(e.model, e.requests) for e in plan.estimates] == [("gpt-4o", 3), (MINI, 4)]
    assert all(e.cost_usd is not None and e.cost_usd > 0 for e in plan.estimates)
    chars = {model: 0 for model in ("gpt-4o", MINI)}
    for shard in shards:
        chars[shard.model or ""] += len(UPath(shard.url).read_text(encoding="utf-8"))
    assert dict(plan.sent_chars) == chars
    with pytest.raises(ValueError, match="nothing to read"):
        read_plan(plan)


# failure safety


def test_an_unreadable_line_fails_the_plan_and_writes_nothing(
    tmp_path: Path, cache: RequestCache
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(request("r0", "a")) + "\nthis is not JSON\n")
    bad = Shard(path.as_uri(), CHAT, MINI, n_requests=2, n_bytes=0, sha256="")
    good = input_shards(tmp_path, [request("g0", "x"), request("g1", "y")])
    out_dir = tmp_path / "submit"
    with pytest.raises(msgspec.DecodeError):
        plan_for([*good, bad], out_dir, cache)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_a_failure_while_writing_the_shards_leaves_no_shard_files(
    tmp_path: Path, cache: RequestCache, shards: list[Shard], monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "submit"
    written: list[Path] = []

    def fail(writer: ShardWriter) -> list[Shard]:
        """commit, failing once the lines to send are written to temporaries."""
        written.extend(out_dir.iterdir())
        raise RuntimeError("disk gone")

    monkeypatch.setattr(request_plan.ShardWriter, "commit", fail)
    with pytest.raises(RuntimeError, match="disk gone"):
        plan_for(shards, out_dir, cache)
    assert written  # the failure came mid-way, with a temporary shard written
    assert list(out_dir.iterdir()) == []
