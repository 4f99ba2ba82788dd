"""The answer generator draws what its slow reference draws, and draws it evenly."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from batch_assets.local_api.answer_random import AnswerRandom
from tests.local_api.reference_answers import reference_below, reference_random_words

seeds = st.one_of(st.integers(min_value=0, max_value=2**64 + 200), st.integers())
bounds = st.integers(min_value=1, max_value=2**64)


@settings(max_examples=200, deadline=None)
@given(seed=seeds, count=st.integers(min_value=0, max_value=40))
def test_words_are_the_reference_words(seed: int, count: int) -> None:
    rng = AnswerRandom(seed)
    assert [rng.word() for _ in range(count)] == reference_random_words(seed, count)


@settings(max_examples=200, deadline=None)
@given(seed=seeds, limits=st.lists(bounds, min_size=1, max_size=20))
def test_draws_below_a_bound_are_the_reference_draws(seed: int, limits: list[int]) -> None:
    rng = AnswerRandom(seed)
    words = reference_random_words(seed, len(limits))
    assert [rng.below(n) for n in limits] == [
        reference_below(w, n) for w, n in zip(words, limits, strict=True)
    ]


@settings(max_examples=100, deadline=None)
@given(seed=seeds)
def test_the_random_api_draws_from_the_words(seed: int) -> None:
    rng = AnswerRandom(seed)
    words = iter(reference_random_words(seed, 8))
    assert rng.choice("abc") == "abc"[reference_below(next(words), 3)]
    assert rng.randint(5, 7) == 5 + reference_below(next(words), 3)
    assert rng.randrange(24) == reference_below(next(words), 24)
    assert rng.randrange(3, 9) == 3 + reference_below(next(words), 6)
    assert rng.random() == (next(words) >> 11) / 2**53
    assert rng.uniform(2.0, 4.0) == 2.0 + 2.0 * ((next(words) >> 11) / 2**53)
    assert rng.getrandbits(10) == next(words) >> 54
    assert 0 <= rng.getrandbits(128) < 2**128


def test_the_same_seed_draws_the_same_and_other_seeds_differ() -> None:
    first = [AnswerRandom(7).below(1000) for _ in range(3)]
    assert first == [AnswerRandom(7).below(1000)] * 3
    streams = {tuple(AnswerRandom(seed).below(2**32) for _ in range(4)) for seed in range(200)}
    assert len(streams) == 200


def test_shuffle_keeps_the_items_and_follows_the_draws() -> None:
    items = list(range(10))
    AnswerRandom(3).shuffle(items)
    assert sorted(items) == list(range(10))
    words = iter(reference_random_words(3, 9))
    expected = list(range(10))
    for i in range(9, 0, -1):
        j = reference_below(next(words), i + 1)
        expected[i], expected[j] = expected[j], expected[i]
    assert items == expected


def test_choices_are_spread_evenly() -> None:
    rng = AnswerRandom(11)
    counts = Counter(rng.choice("abcd") for _ in range(40_000))
    assert all(9_400 < count < 10_600 for count in counts.values()), counts


def test_empty_choices_and_ranges_are_refused() -> None:
    rng = AnswerRandom(1)
    for draw in (lambda: rng.choice([]), lambda: rng.randint(3, 2), lambda: rng.randrange(0)):
        try:
            draw()
        except (IndexError, ValueError):
            continue
        raise AssertionError("an empty draw was not refused")
