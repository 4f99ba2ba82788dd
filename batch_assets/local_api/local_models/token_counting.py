"""Token estimates of texts and of the inputs of request bodies."""

from typing import Any

from batch_assets.local_api.json_values import is_int
from batch_assets.local_api.local_models.request_inputs import content_parts, moderation_inputs

IMAGE_TOKENS = 85
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3


def count_tokens(text: str) -> int:
    """Estimate tokens as one per 4 characters, rounded up (0 only for empty text)."""
    return (len(text) + 3) // 4 if isinstance(text, str) else 0


def estimate_input_tokens(endpoint: str, body: dict) -> int:
    """Estimate the prompt tokens of a request body (best effort, never raises)."""
    if not isinstance(body, dict):
        return 0
    if endpoint == "/v1/chat/completions":
        return messages_tokens(body.get("messages"))
    if endpoint == "/v1/responses":
        return responses_input_tokens(body)
    if endpoint == "/v1/completions":
        return count_prompt_tokens(body.get("prompt"))
    if endpoint == "/v1/embeddings":
        return count_prompt_tokens(body.get("input"))
    if endpoint == "/v1/moderations":
        return sum(sum(map(count_tokens, t)) for t, _ in moderation_inputs(body.get("input")))
    return 0


def _item_tokens(item: object) -> int:
    """Estimate one message or input item: its texts, images, tool calls and overhead."""
    if type(item) is dict and len(item) == 2 and "role" in item:
        content = item.get("content")
        if type(content) is str:  # a plain message: its text and overhead, nothing else
            return MESSAGE_OVERHEAD_TOKENS + (len(content) + 3) // 4
    if isinstance(item, str):
        return MESSAGE_OVERHEAD_TOKENS + count_tokens(item)
    if not isinstance(item, dict):
        return 0
    texts, images = content_parts(item.get("content"))
    total = MESSAGE_OVERHEAD_TOKENS + sum(map(count_tokens, texts)) + images * IMAGE_TOKENS
    for key in ("name", "output", "arguments"):
        if isinstance(item.get(key), str):
            total += count_tokens(item[key])
    calls = item.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            total += count_tokens(str(function.get("name", "")))
            total += count_tokens(str(function.get("arguments", "")))
    return total


def messages_tokens(messages: object) -> int:
    """Estimate chat messages (per-message overhead plus reply priming, as tiktoken recipes do)."""
    if not isinstance(messages, list) or not messages:
        return 0
    return sum(_item_tokens(m) for m in messages) + REPLY_PRIMING_TOKENS


def responses_input_tokens(body: dict[str, Any]) -> int:
    """Estimate a /v1/responses body: instructions plus input (str or list of items)."""
    items: list[object] = []
    if isinstance(body.get("instructions"), str):
        items.append(body["instructions"])
    value = body.get("input")
    if isinstance(value, str):
        items.append(value)
    elif isinstance(value, list):
        items.extend(value)
    return messages_tokens(items)


def count_prompt_tokens(value: object) -> int:
    """Count the tokens of a prompt/input in any of its accepted forms (0 when malformed)."""
    if isinstance(value, list) and not all(is_int(v) for v in value):
        return sum(_single_prompt_tokens(v) for v in value)
    return _single_prompt_tokens(value)


def _single_prompt_tokens(value: object) -> int:
    """Count one prompt: a string or a token array (0 for anything else, however nested)."""
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, list) and value and all(is_int(v) for v in value):
        return len(value)
    return 0
