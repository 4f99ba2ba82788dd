"""The price of a set of batch requests before they are submitted."""

from __future__ import annotations

import math

import bpe_openai  # type: ignore[import-untyped]
import pytest

from batch_assets.core.cost_estimate import (
    ModelEstimate,
    ModelUsage,
    RequestFeatures,
    count_input_tokens,
    estimate_model,
    largest_contributors,
    request_features,
    token_counter,
    total_cost,
)
from batch_assets.core.costs import DEFAULT_PRICES, ModelPrice, estimate_cost_usd
from batch_assets.core.limits import (
    CHAT_COMPLETIONS,
    COMPLETIONS,
    EMBEDDINGS,
    MODERATIONS,
    RESPONSES,
)

O200K = bpe_openai.get_encoding("o200k_base")


def tokens(text: str) -> int:
    return len(O200K.encode_ordinary(text))


def test_chat_string_contents_are_joined_and_messages_counted() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."},
        ],
        "max_tokens": 20,
    }
    assert request_features(CHAT_COMPLETIONS, body) == RequestFeatures(
        ("Be brief.", "Name a colour."), 2, 20
    )


def test_chat_content_parts_give_their_text_and_skip_images() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "text", "text": "Answer in one word."},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [{"id": "x"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    assert request_features(CHAT_COMPLETIONS, body) == RequestFeatures(
        ("What is this?", "Answer in one word."), 2, None
    )


def test_responses_instructions_come_before_the_input_messages() -> None:
    body = {
        "instructions": "Answer in French.",
        "input": [
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": [{"type": "input_text", "text": "Goodbye"}]},
        ],
        "max_output_tokens": 64,
    }
    assert request_features(RESPONSES, body) == RequestFeatures(
        ("Answer in French.", "Hello", "Goodbye"), 2, 64
    )


def test_responses_string_input_has_no_messages() -> None:
    body = {"input": "Hello"}
    assert request_features(RESPONSES, body) == RequestFeatures(("Hello",), 0, None)


def test_completions_list_prompt_is_joined() -> None:
    body = {"prompt": ["one", "two", 3], "max_tokens": 5}
    assert request_features(COMPLETIONS, body) == RequestFeatures(("one", "two"), 0, 5)


def test_embeddings_and_moderations_read_their_input() -> None:
    assert request_features(EMBEDDINGS, {"input": ["a b", "c"]}) == RequestFeatures(
        ("a b", "c"), 0, None
    )
    assert request_features(MODERATIONS, {"input": "bad words"}) == RequestFeatures(
        ("bad words",), 0, None
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_completion_tokens": 10, "max_tokens": 20, "max_output_tokens": 30}, 10),
        ({"max_tokens": 20, "max_output_tokens": 30}, 20),
        ({"max_output_tokens": 30}, 30),
        ({"max_completion_tokens": None, "max_tokens": 20}, 20),
        ({"max_tokens": "20"}, None),
        ({"max_tokens": True}, None),
        ({}, None),
    ],
)
def test_max_token_fields_by_precedence(fields: dict[str, object], expected: int | None) -> None:
    body = {"messages": [], **fields}
    assert request_features(CHAT_COMPLETIONS, body).max_output_tokens == expected


@pytest.mark.parametrize(
    "body",
    [{}, {"messages": "not a list"}, {"messages": [None, 3, "x"]}, {"messages": [{"content": 5}]}],
)
def test_odd_shapes_do_not_raise(body: dict[str, object]) -> None:
    features = request_features(CHAT_COMPLETIONS, body)
    assert features.texts == ()


def test_token_counter_for_a_model_and_its_dated_snapshot() -> None:
    found = token_counter("gpt-4o-mini")
    assert found is not None
    count, name = found
    assert name == "o200k_base"
    assert count("Hello, world!") == tokens("Hello, world!")
    snapshot = token_counter("gpt-4o-mini-2024-07-18")
    assert snapshot is not None and snapshot[1] == "o200k_base"
    older = token_counter("gpt-4-turbo-2024-04-09")
    assert older is not None and older[1] == "cl100k_base"


@pytest.mark.parametrize("model", ["no-such-model", "gpt-4oops", "text-davinci-003"])
def test_no_offline_tokenizer_gives_none(model: str) -> None:
    # text-davinci-003's p50k_base is not shipped offline: bpe_openai would download it.
    assert token_counter(model) is None


def test_long_texts_are_counted_piecewise_and_exactly() -> None:
    found = token_counter("gpt-4o")
    assert found is not None
    count = found[0]
    text = "Über naïve words, 123 numbers.\n  日本語 and (parentheses) it's " * 3_000
    assert len(text) > 150_000
    assert count(text) == tokens(text)
    assert count("word " * 300_000) > 200_000  # beyond what one call to the tokenizer takes


def test_chat_input_tokens_add_three_per_message_and_three_per_reply() -> None:
    bodies = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ]
        },
        {"messages": [{"role": "user", "content": "Count to three."}]},
    ]
    features = [request_features(CHAT_COMPLETIONS, body) for body in bodies]
    expected = tokens("Be brief.") + tokens("Hi") + 3 * 2 + 3 + tokens("Count to three.") + 3 + 3
    assert count_input_tokens("gpt-4o-mini", CHAT_COMPLETIONS, features) == (
        expected,
        "tokenizer o200k_base",
    )


def test_other_endpoints_count_only_the_text() -> None:
    features = [request_features(EMBEDDINGS, {"input": ["alpha beta", "gamma"]})]
    found = count_input_tokens("text-embedding-3-small", EMBEDDINGS, features)
    cl100k = bpe_openai.get_encoding("cl100k_base")
    expected = len(cl100k.encode_ordinary("alpha beta")) + len(cl100k.encode_ordinary("gamma"))
    assert found == (expected, "tokenizer cl100k_base")
    assert count_input_tokens("no-such-model", EMBEDDINGS, features) is None


def chat(text: str, max_tokens: int | None = None) -> RequestFeatures:
    body: dict[str, object] = {"messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return request_features(CHAT_COMPLETIONS, body)


def test_estimate_with_the_tokenizer_and_max_tokens() -> None:
    features = [chat("Summarize: the cat sat.", 100), chat("Summarize: the dog ran.", 50)]
    estimate = estimate_model(
        "gpt-4o-mini", CHAT_COMPLETIONS, features, 10_000, None, DEFAULT_PRICES
    )
    input_tokens = tokens("Summarize: the cat sat.") + tokens("Summarize: the dog ran.") + 2 * 6
    assert estimate == ModelEstimate(
        model="gpt-4o-mini",
        requests=2,
        input_tokens=input_tokens,
        input_method="tokenizer o200k_base",
        output_tokens=150,
        output_method="max_tokens (upper bound)",
        cost_usd=estimate_cost_usd("gpt-4o-mini", input_tokens, 150, DEFAULT_PRICES),
    )


def test_tokenizer_wins_over_earlier_usage_for_input() -> None:
    earlier = ModelUsage(
        "gpt-4o-mini", requests=10, input_tokens=999, output_tokens=70, input_chars=4
    )
    estimate = estimate_model("gpt-4o-mini", CHAT_COMPLETIONS, [chat("Hi")], 400, earlier, {})
    assert (estimate.input_tokens, estimate.input_method) == (
        tokens("Hi") + 6,
        "tokenizer o200k_base",
    )
    assert (estimate.output_tokens, estimate.output_method) == (7, "earlier usage (7 per request)")


def test_characters_over_four_calibrated_by_earlier_usage() -> None:
    prices = {"local-model": ModelPrice(1.0, 2.0)}
    # Earlier: 4,000 characters (1,000 by chars/4) were 1,500 tokens, so x1.5.
    earlier = ModelUsage(
        "local-model", requests=20, input_tokens=1_500, output_tokens=900, input_chars=4_000
    )
    features = [chat("x" * 50) for _ in range(30)]
    estimate = estimate_model("local-model", CHAT_COMPLETIONS, features, 2_001, earlier, prices)
    assert estimate.input_tokens == round(math.ceil(2_001 / 4) * 1.5) == 752
    assert estimate.input_method == "characters / 4, calibrated by earlier usage (x1.50)"
    assert estimate.output_tokens == round(900 / 20 * 30) == 1_350
    assert estimate.output_method == "earlier usage (45 per request)"
    assert estimate.cost_usd == pytest.approx((752 * 1.0 + 1_350 * 2.0) / 1e6 / 2)


def test_characters_over_four_without_earlier_usage() -> None:
    features = [chat("a", 10), chat("b"), chat("c")]
    estimate = estimate_model("local-model", CHAT_COMPLETIONS, features, 1_001, None, {})
    assert (estimate.input_tokens, estimate.input_method) == (251, "characters / 4")
    assert (estimate.output_tokens, estimate.output_method) == (
        10,
        "max_tokens (upper bound, 2 requests without a limit count 0)",
    )
    assert estimate.cost_usd is None


def test_no_earlier_usage_and_no_max_tokens_is_unknown_output() -> None:
    estimate = estimate_model("local-model", RESPONSES, [chat("a")], 100, None, {})
    assert (estimate.output_tokens, estimate.output_method) == (
        0,
        "unknown (no earlier usage, no max_tokens)",
    )


def test_embeddings_have_no_output() -> None:
    features = [request_features(EMBEDDINGS, {"input": "hello"})]
    earlier = ModelUsage("text-embedding-3-small", 5, 50, 0, 200)
    estimate = estimate_model(
        "text-embedding-3-small", EMBEDDINGS, features, 80, earlier, DEFAULT_PRICES
    )
    assert (estimate.output_tokens, estimate.output_method) == (
        0,
        "none (endpoint returns no tokens)",
    )
    assert estimate.cost_usd == estimate_cost_usd(
        "text-embedding-3-small", estimate.input_tokens, 0, DEFAULT_PRICES
    )


def test_unknown_model_price_gives_no_cost() -> None:
    estimate = estimate_model("gpt-4o-mini", CHAT_COMPLETIONS, [chat("Hi", 5)], 50, None, {})
    assert estimate.cost_usd is None
    assert estimate.input_method == "tokenizer o200k_base"


def estimate(model: str, cost: float | None) -> ModelEstimate:
    return ModelEstimate(model, 1, 1, "characters / 4", 1, "max_tokens (upper bound)", cost)


def test_largest_contributors_most_expensive_first_unknown_last() -> None:
    estimates = [estimate("a", 0.5), estimate("b", None), estimate("c", 2.0), estimate("d", 1.0)]
    assert [e.model for e in largest_contributors(estimates)] == ["c", "d", "a"]
    assert [e.model for e in largest_contributors(estimates, n=10)] == ["c", "d", "a", "b"]
    assert largest_contributors(estimates, n=0) == []


def test_total_cost_sums_the_known_costs() -> None:
    assert total_cost([estimate("a", 0.1), estimate("b", None), estimate("c", 0.2)]) == 0.3
    assert total_cost([estimate("b", None)]) is None
    assert total_cost([]) is None


def test_output_without_a_limit_or_earlier_usage_leaves_the_cost_unbounded() -> None:
    features = [chat("Tell me a story."), chat("And another.", 50)]
    estimate = estimate_model("gpt-4o-mini", CHAT_COMPLETIONS, features, 100, None, DEFAULT_PRICES)
    assert estimate.cost_usd is not None and not estimate.output_bounded
    assert not estimate.priced  # a budget cannot be judged on it
    earlier = ModelUsage("gpt-4o-mini", 10, 500, 300, 2000)
    learned = estimate_model(
        "gpt-4o-mini", CHAT_COMPLETIONS, features, 100, earlier, DEFAULT_PRICES
    )
    assert learned.priced
