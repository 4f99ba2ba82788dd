"""The price of a set of batch requests before they are submitted.

Input tokens are counted exactly with the model's tokenizer where one is known offline, else
estimated as characters / 4, calibrated by the pipeline's earlier usage when there is some.
Output tokens come from earlier usage, else from the requests' max tokens (an upper bound).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bpe_openai  # type: ignore[import-untyped]

from batch_assets.core.costs import ModelPrice, estimate_cost_usd
from batch_assets.core.limits import (
    CHAT_COMPLETIONS,
    COMPLETIONS,
    EMBEDDINGS,
    MODERATIONS,
    RESPONSES,
)

# The encodings whose data ships with bpe_openai; it loads the others (gpt2, r50k, p50k) through
# tiktoken_ext, which downloads them.
_OFFLINE_ENCODINGS = frozenset({"o200k_base", "cl100k_base"})
# bpe_openai refuses a text of over 200,000 tokens or of 1,000,000 characters; 50,000 characters
# are at most 200,000 UTF-8 bytes, so at most 200,000 tokens.
_PIECE_CHARS = 50_000
_REMEMBERED_TEXTS = 4096
_MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
_NO_OUTPUT_ENDPOINTS = frozenset({EMBEDDINGS, MODERATIONS})
# OpenAI's cookbook: every chat message costs 3 tokens besides its text, the reply's primer 3.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3


@dataclass(frozen=True)
class RequestFeatures:
    """What one request contributes to the estimate."""

    texts: tuple[str, ...]  # the prompt's texts: message contents, instructions, inputs
    messages: int
    max_output_tokens: int | None


def request_features(endpoint: str, body: Mapping[str, Any]) -> RequestFeatures:
    """The prompt text, message count and output limit of one request body, whatever its shape."""
    texts: list[str] = []
    messages = 0
    if endpoint == CHAT_COMPLETIONS:
        texts, messages = _message_texts(body.get("messages"))
    elif endpoint == RESPONSES:
        texts = _strings(body.get("instructions"))
        entry = body.get("input")
        if isinstance(entry, list):
            contents, messages = _message_texts(entry)
            texts += contents
        else:
            texts += _strings(entry)
    elif endpoint == COMPLETIONS:
        texts = _strings(body.get("prompt"))
    elif endpoint in _NO_OUTPUT_ENDPOINTS:
        texts = _strings(body.get("input"))
    return RequestFeatures(tuple(texts), messages, _max_output_tokens(body))


def _message_texts(items: object) -> tuple[list[str], int]:
    """The texts of a message list's contents and the number of messages in it."""
    if not isinstance(items, list):
        return [], 0
    messages = [item for item in items if isinstance(item, Mapping)]
    texts = [text for message in messages for text in _strings(message.get("content"))]
    return texts, len(messages)


def _strings(value: object) -> list[str]:
    """A string, or the strings and the `text` of the parts of a list; nothing else."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        return []
    texts = []
    for item in value:
        text = item.get("text") if isinstance(item, Mapping) else item
        if isinstance(text, str):
            texts.append(text)
    return texts


def _max_output_tokens(body: Mapping[str, Any]) -> int | None:
    """The first of the body's max token fields that is a non-negative integer."""
    for field in _MAX_TOKEN_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def token_counter(model: str) -> tuple[Callable[[str], int], str] | None:
    """An exact offline token counter for the model and its encoding's name, or None."""
    name = _encoding_name(model.lower())
    return None if name is None else (_counter(name), name)


@functools.cache
def _encoding_name(model: str) -> str | None:
    """The offline encoding of a model, matching dated snapshots by the longest known prefix."""
    supported = {name.lower() for name in bpe_openai.list_supported_models()}
    if model not in supported:
        prefixes = [name for name in supported if model.startswith(f"{name}-")]
        if not prefixes:
            return None
        model = max(prefixes, key=len)
    try:
        name = str(bpe_openai.encoding_name_for_model(model))
    except (KeyError, bpe_openai.UnsupportedModelError):
        return None
    return name if name in _OFFLINE_ENCODINGS else None


@functools.cache
def _counter(encoding_name: str) -> Callable[[str], int]:
    """Count a text's tokens in the encoding, long texts piece by piece; a text seen lately (a
    template's system prompt, asked in every request) is counted once."""
    encode = bpe_openai.get_encoding(encoding_name).encode_ordinary

    @functools.lru_cache(maxsize=_REMEMBERED_TEXTS)
    def count(text: str) -> int:
        if len(text) <= _PIECE_CHARS:
            tokens: list[int] = encode(text)
            return len(tokens)
        return sum(count(piece) for piece in _pieces(text))

    return count


def _pieces(text: str) -> list[str]:
    """`text` cut into pieces of at most `_PIECE_CHARS` characters, where tokens split anyway.

    A cut before a space that follows a non-space and precedes a letter keeps the tokenizers'
    pre-tokens (the space starts the word's), so the count stays exact; a text with no such
    place in the second half of a piece is cut at the piece's end, which may miscount a token.
    """
    pieces = []
    start = 0
    while len(text) - start > _PIECE_CHARS:
        end = start + _PIECE_CHARS
        cut = text.rfind(" ", start + _PIECE_CHARS // 2, end)
        while cut > start and not (text[cut + 1].isalpha() and not text[cut - 1].isspace()):
            cut = text.rfind(" ", start + _PIECE_CHARS // 2, cut)
        if cut <= start:
            cut = end
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def request_token_counter(
    model: str, endpoint: str
) -> tuple[Callable[[RequestFeatures], int], str] | None:
    """An exact counter of one request's input tokens and how it counts (`tokenizer <name>`),
    or None when the model has no offline tokenizer."""
    found = token_counter(model)
    if found is None:
        return None
    count, encoding_name = found
    overhead = endpoint == CHAT_COMPLETIONS

    def request_tokens(request: RequestFeatures) -> int:
        tokens = sum(map(count, request.texts))
        if overhead:
            tokens += _TOKENS_PER_MESSAGE * request.messages + _TOKENS_PER_REPLY
        return tokens

    return request_tokens, f"tokenizer {encoding_name}"


def count_input_tokens(
    model: str, endpoint: str, features: Sequence[RequestFeatures]
) -> tuple[int, str] | None:
    """Exact input tokens of these requests and how they were counted, or None: no tokenizer."""
    found = request_token_counter(model, endpoint)
    if found is None:
        return None
    request_tokens, method = found
    return sum(map(request_tokens, features)), method


@dataclass(frozen=True)
class RequestTotals:
    """What the estimate needs of one model's requests, summed."""

    requests: int
    line_chars: int  # the characters of their JSONL lines, each with its line end
    max_output_tokens: int  # the sum of the limits the requests set
    unlimited: int  # requests that set no limit
    input_tokens: int | None = None  # exact, by a tokenizer; None without one
    input_method: str | None = None  # how `input_tokens` was counted


@dataclass(frozen=True)
class ModelUsage:
    """One model's actual usage in the pipeline's last finished submission (for calibration)."""

    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    input_chars: int


@dataclass(frozen=True)
class ModelEstimate:
    """The forecast for one model's requests at batch prices."""

    model: str
    requests: int
    input_tokens: int
    input_method: str
    output_tokens: int
    output_method: str
    cost_usd: float | None

    output_bounded: bool = True  # False: some requests set no output limit and nothing is known

    @property
    def priced(self) -> bool:
        """Whether `cost_usd` bounds what the requests may cost: a price, and output known."""
        return self.cost_usd is not None and self.output_bounded


def estimate_model(
    model: str,
    endpoint: str,
    features: Sequence[RequestFeatures],
    line_chars: int,
    earlier: ModelUsage | None,
    prices: Mapping[str, ModelPrice],
) -> ModelEstimate:
    """The tokens and batch cost of one model's requests, and how each number was reached."""
    counted = count_input_tokens(model, endpoint, features)
    limits = [request.max_output_tokens for request in features]
    known = [limit for limit in limits if limit is not None]
    totals = RequestTotals(
        requests=len(features),
        line_chars=line_chars,
        max_output_tokens=sum(known),
        unlimited=len(limits) - len(known),
        input_tokens=None if counted is None else counted[0],
        input_method=None if counted is None else counted[1],
    )
    return estimate_totals(model, endpoint, totals, earlier, prices)


def estimate_totals(
    model: str,
    endpoint: str,
    totals: RequestTotals,
    earlier: ModelUsage | None,
    prices: Mapping[str, ModelPrice],
) -> ModelEstimate:
    """The tokens and batch cost of one model's requests, from their totals."""
    input_tokens, input_method = _input_estimate(totals, earlier)
    output_tokens, output_method = _output_estimate(endpoint, totals, earlier)
    unknown_output = (
        endpoint not in _NO_OUTPUT_ENDPOINTS
        and (earlier is None or earlier.requests <= 0)
        and totals.unlimited > 0
    )
    return ModelEstimate(
        model=model,
        requests=totals.requests,
        input_tokens=input_tokens,
        input_method=input_method,
        output_tokens=output_tokens,
        output_method=output_method,
        cost_usd=estimate_cost_usd(model, input_tokens, output_tokens, prices),
        output_bounded=not unknown_output,
    )


def _input_estimate(totals: RequestTotals, earlier: ModelUsage | None) -> tuple[int, str]:
    """Input tokens by the tokenizer, else by characters / 4 calibrated by earlier usage."""
    if totals.input_tokens is not None and totals.input_method is not None:
        return totals.input_tokens, totals.input_method
    quarter = math.ceil(totals.line_chars / 4)
    if earlier is None or earlier.input_chars <= 0 or earlier.input_tokens <= 0:
        return quarter, "characters / 4"
    ratio = earlier.input_tokens / math.ceil(earlier.input_chars / 4)
    return round(quarter * ratio), f"characters / 4, calibrated by earlier usage (x{ratio:.2f})"


def _output_estimate(
    endpoint: str, totals: RequestTotals, earlier: ModelUsage | None
) -> tuple[int, str]:
    """Output tokens by earlier usage per request, else by the requests' max tokens."""
    if endpoint in _NO_OUTPUT_ENDPOINTS:
        return 0, "none (endpoint returns no tokens)"
    if earlier is not None and earlier.requests > 0:
        per_request = earlier.output_tokens / earlier.requests
        return (
            round(per_request * totals.requests),
            f"earlier usage ({per_request:,.0f} per request)",
        )
    unlimited = totals.unlimited
    if not unlimited:
        return totals.max_output_tokens, "max_tokens (upper bound)"
    if unlimited == totals.requests:
        return 0, "unknown (no earlier usage, no max_tokens)"
    without = f"{unlimited:,} requests without a limit count"
    if unlimited == 1:
        without = "1 request without a limit counts"
    return totals.max_output_tokens, f"max_tokens (upper bound, {without} 0)"


def total_cost(estimates: Sequence[ModelEstimate]) -> float | None:
    """The sum of the known costs, None if none is known."""
    known = [estimate.cost_usd for estimate in estimates if estimate.cost_usd is not None]
    return round(sum(known), 6) if known else None


def largest_contributors(estimates: Sequence[ModelEstimate], n: int = 3) -> list[ModelEstimate]:
    """The n most expensive models first (unknown cost last)."""
    ranked = sorted(
        estimates,
        key=lambda estimate: (estimate.cost_usd is None, -(estimate.cost_usd or 0.0)),
    )
    return ranked[: max(n, 0)]
