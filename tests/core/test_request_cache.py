"""Tests for the request cache: its keys, what it stores, and which entry a lookup finds."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from upath import UPath

from batch_assets.core import storage
from batch_assets.core.output_parsing import RESULT_SCHEMA
from batch_assets.core.request_cache import (
    CACHE_KEY,
    CACHED,
    CACHED_AT,
    ENTRY_SCHEMA,
    PROVENANCE_SCHEMA,
    RequestCache,
    canonical_body,
    request_key,
    with_provenance,
)
from tests.core.answers import CHAT, NOW, body, result, results
from tests.core.strategies import awkward_text, json_values, property_settings

EMBEDDINGS = "/v1/embeddings"


def keys_of(requests: dict[str, dict[str, Any]]) -> pl.DataFrame:
    """custom_id and cache key of each chat request body."""
    return pl.DataFrame(
        {
            "custom_id": list(requests),
            CACHE_KEY: [request_key(CHAT, value) for value in requests.values()],
        }
    )


def entry(key: str, answer: str, cached_at: datetime) -> dict[str, Any]:
    """One cache entry (ENTRY_SCHEMA)."""
    row: dict[str, Any] = dict.fromkeys(ENTRY_SCHEMA)
    row.update({CACHE_KEY: key, "status_code": 200, "answer": answer, CACHED_AT: cached_at})
    return row


def write_segment(cache: RequestCache, name: str, *entries: dict[str, Any]) -> None:
    """Write segment `name` by hand, with its entries' own `cached_at`."""
    storage.write_parquet(pl.DataFrame(list(entries), schema=ENTRY_SCHEMA), cache.segment(name))


@pytest.fixture
def cache(tmp_path: Path) -> RequestCache:
    """An empty cache in a folder of its own."""
    return RequestCache(UPath(tmp_path / "cache"))


# request_key


def test_the_key_ignores_the_order_of_keys_at_every_depth() -> None:
    one = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": {"a": 1, "b": 2}}
    other = {"n": {"b": 2, "a": 1}, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    assert request_key(CHAT, one) == request_key(CHAT, other)
    assert canonical_body(one) == canonical_body(other)


def test_the_key_depends_on_the_endpoint() -> None:
    value = {"model": "text-embedding-3-small", "input": "hi"}
    assert request_key(CHAT, value) != request_key(EMBEDDINGS, value)


HELLO = body("hello", temperature=0)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(body("hello!", temperature=0), id="content"),
        pytest.param(body("hello", model="gpt-4o", temperature=0), id="model"),
        pytest.param({**HELLO, "temperature": 0.5}, id="number"),
        pytest.param({**HELLO, "temperature": None}, id="null"),
        pytest.param({**HELLO, "temperature": False}, id="bool-for-int"),
        pytest.param({**HELLO, "max_tokens": 5}, id="added-key"),
        pytest.param(body("hello"), id="removed"),
        pytest.param({**HELLO, "messages": [{"role": "system", "content": "hello"}]}, id="nested"),
        pytest.param(
            {**HELLO, "messages": [{"role": "user", "content": c} for c in ("a", "b")]},
            id="list-order-a-b",
        ),
    ],
)
def test_any_change_of_a_value_changes_the_key(changed: dict[str, Any]) -> None:
    reference = {**HELLO, "messages": [{"role": "user", "content": c} for c in ("b", "a")]}
    for original in (HELLO, reference):
        assert request_key(CHAT, changed) != request_key(CHAT, original)


def test_the_key_is_of_the_body_alone_so_custom_ids_do_not_matter() -> None:
    first = {"custom_id": "a", "method": "POST", "url": CHAT, "body": body("hi")}
    second = {**first, "custom_id": "b"}
    assert request_key(CHAT, first["body"]) == request_key(CHAT, second["body"])
    assert len(request_key(CHAT, body("hi"))) == 32  # 128 bits, hex


def shuffled(value: Any, rng: random.Random) -> Any:
    """`value` with the keys of every object in a random order (lists kept in order)."""
    if isinstance(value, dict):
        items = [(key, shuffled(item, rng)) for key, item in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


@property_settings(100)
@given(
    value=st.dictionaries(
        awkward_text(8), json_values(awkward_text(8), 20, st.integers(-(2**70), 2**70))
    ),
    rng=st.randoms(use_true_random=False),
)
def test_the_key_survives_a_json_round_trip_with_keys_shuffled(
    value: dict[str, Any], rng: random.Random
) -> None:
    again = json.loads(json.dumps(shuffled(value, rng), ensure_ascii=False))
    assert request_key(CHAT, again) == request_key(CHAT, value)


# store


def test_only_answered_lines_are_stored_and_the_count_is_returned(cache: RequestCache) -> None:
    answered = results(
        result("ok", "fine"),
        result("refused", None, status=400),
        result("failed", None, status=None),
    )
    keys = keys_of({"ok": body("a"), "refused": body("b"), "failed": body("c")})
    assert cache.store(answered, keys, "run-1") == 1
    stored = storage.read_parquet(cache.segment("run-1"))
    assert stored.schema == pl.Schema(ENTRY_SCHEMA)
    assert stored[CACHE_KEY].to_list() == [request_key(CHAT, body("a"))]
    assert stored["answer"].to_list() == ["fine"]
    assert stored["batch_request_id"].to_list() == ["br-ok"]


def test_nothing_answered_stores_nothing(cache: RequestCache) -> None:
    answered = results(result("refused", None, status=400))
    assert cache.store(answered, keys_of({"refused": body("b")}), "run-1") == 0
    assert cache.segments() == []


def test_entries_are_joined_to_their_keys_by_custom_id(cache: RequestCache) -> None:
    requests = {f"r{i}": body(f"question {i}") for i in range(5)}
    answered = results(*(result(f"r{i}", f"answer {i}") for i in (3, 0, 4, 1)))
    keys = keys_of(dict(reversed(requests.items())))  # another order than the answers
    assert cache.store(answered, keys, "run-1") == 4
    found = cache.lookup(keys[CACHE_KEY], now=NOW)
    answers = dict(zip(found[CACHE_KEY], found["answer"], strict=True))
    assert answers == {request_key(CHAT, requests[f"r{i}"]): f"answer {i}" for i in (0, 1, 3, 4)}


def test_a_segment_is_one_parquet_file_stamped_when_stored(cache: RequestCache) -> None:
    before = datetime.now(UTC)
    cache.store(results(result("ok", "fine")), keys_of({"ok": body("a")}), "run-1")
    after = datetime.now(UTC)
    assert cache.segments() == [cache.segment("run-1")]
    assert cache.segment("run-1") == cache.root / "segments" / "run-1.parquet"
    (stamp,) = storage.read_parquet(cache.segment("run-1"))[CACHED_AT].to_list()
    assert before <= stamp <= after


def test_storing_a_name_again_keeps_the_first_segment_and_its_age(cache: RequestCache) -> None:
    keys = keys_of({"a": body("a"), "b": body("b")})
    cache.store(results(result("a", "first a"), result("b", "first b")), keys, "run-1")
    first = storage.read_parquet(cache.segment("run-1"))
    assert cache.store(results(result("a", "second a")), keys, "run-1") == 0
    assert cache.segments() == [cache.segment("run-1")]
    assert storage.read_parquet(cache.segment("run-1")).equals(first)  # `cached_at` unchanged


@pytest.mark.parametrize("reason", ["length", "max_output_tokens", "content_filter"])
def test_answers_cut_short_are_not_stored(cache: RequestCache, reason: str) -> None:
    keys = keys_of({"a": body("a"), "b": body("b")})
    cut = {**result("a", "half an ans"), "finish_reason": reason}
    whole = {**result("b", "a whole answer"), "finish_reason": "stop"}
    assert cache.store(results(cut, whole), keys, "run-1") == 1
    assert storage.read_parquet(cache.segment("run-1"))["answer"].to_list() == ["a whole answer"]


def test_one_entry_per_key_when_a_submission_answers_one_request_twice(
    cache: RequestCache,
) -> None:
    keys = keys_of({"a": body("same"), "b": body("same")})
    assert cache.store(results(result("a", "one"), result("b", "two")), keys, "run-1") == 1
    assert storage.read_parquet(cache.segment("run-1"))["answer"].to_list() == ["one"]


# lookup


@pytest.mark.parametrize("newer", ["a-segment", "z-segment"])
def test_the_newest_entry_of_a_key_wins_whatever_the_segment_names(
    cache: RequestCache, newer: str
) -> None:
    key = request_key(CHAT, body("a"))
    older = "z-segment" if newer == "a-segment" else "a-segment"
    write_segment(cache, newer, entry(key, "new", NOW - timedelta(hours=1)))
    write_segment(cache, older, entry(key, "old", NOW - timedelta(hours=2)))
    found = cache.lookup(pl.Series([key]), now=NOW)
    assert found["answer"].to_list() == ["new"]
    assert found[CACHED_AT].to_list() == [NOW - timedelta(hours=1)]


def test_a_later_store_wins_over_an_earlier_one(cache: RequestCache) -> None:
    keys = keys_of({"a": body("a")})
    cache.store(results(result("a", "earlier")), keys, "z-run")
    cache.store(results(result("a", "later")), keys, "a-run")
    assert cache.lookup(keys[CACHE_KEY])["answer"].to_list() == ["later"]


def test_max_age_leaves_out_older_entries(cache: RequestCache) -> None:
    fresh, stale = request_key(CHAT, body("fresh")), request_key(CHAT, body("stale"))
    write_segment(
        cache,
        "run-1",
        entry(fresh, "fresh answer", NOW - timedelta(minutes=10)),
        entry(stale, "stale answer", NOW - timedelta(hours=2)),
    )
    keys = pl.Series([fresh, stale])
    found = cache.lookup(keys, max_age=timedelta(hours=1), now=NOW)
    assert found[CACHE_KEY].to_list() == [fresh]
    assert cache.lookup(keys, max_age=timedelta(hours=3), now=NOW).height == 2
    assert cache.lookup(keys, now=NOW).height == 2


def test_max_age_falls_back_to_an_older_entry_within_it(cache: RequestCache) -> None:
    key = request_key(CHAT, body("a"))
    write_segment(cache, "run-1", entry(key, "old", NOW - timedelta(hours=2)))
    write_segment(cache, "run-2", entry(key, "new", NOW - timedelta(minutes=5)))
    found = cache.lookup(pl.Series([key]), max_age=timedelta(days=1), now=NOW)
    assert found["answer"].to_list() == ["new"]
    later = NOW + timedelta(hours=1)
    assert cache.lookup(pl.Series([key]), max_age=timedelta(hours=1), now=later).height == 0


def test_missing_keys_are_absent_and_wanted_keys_found_once(cache: RequestCache) -> None:
    here, missing = request_key(CHAT, body("here")), request_key(CHAT, body("missing"))
    write_segment(cache, "run-1", entry(here, "yes", NOW))
    found = cache.lookup(pl.Series("any name", [missing, here, here]), now=NOW)
    assert found[CACHE_KEY].to_list() == [here]
    assert found.schema == pl.Schema(ENTRY_SCHEMA)


@pytest.mark.parametrize("made", [False, True], ids=["no-folder", "empty-folder"])
def test_an_empty_cache_finds_nothing(cache: RequestCache, made: bool) -> None:
    if made:
        Path(cache.segments_dir.path).mkdir(parents=True)
    assert cache.segments() == []
    found = cache.lookup(pl.Series([request_key(CHAT, body("a"))]), now=NOW)
    assert found.height == 0
    assert found.schema == pl.Schema(ENTRY_SCHEMA)


def test_files_other_than_segments_are_ignored(cache: RequestCache) -> None:
    key = request_key(CHAT, body("a"))
    write_segment(cache, "run-1", entry(key, "yes", NOW))
    Path(cache.segments_dir.path, "notes.txt").write_text("not a segment")
    assert cache.segments() == [cache.segment("run-1")]
    assert cache.lookup(pl.Series([key]), now=NOW)["answer"].to_list() == ["yes"]


# with_provenance


@pytest.mark.parametrize("cached", [False, True])
def test_with_provenance_adds_the_provenance_columns(cached: bool) -> None:
    frame = with_provenance(results(result("a", "x"), result("b", "y")), cached=cached)
    assert frame.columns == [*RESULT_SCHEMA, *PROVENANCE_SCHEMA]
    assert frame.select(list(PROVENANCE_SCHEMA)).schema == pl.Schema(PROVENANCE_SCHEMA)
    assert frame[CACHED].to_list() == [cached, cached]
    assert frame[CACHED_AT].to_list() == [None, None]
