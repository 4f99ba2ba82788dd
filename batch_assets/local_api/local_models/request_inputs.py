"""The inputs a request body holds: message contents, prompts and moderation inputs."""

from typing import Any

from batch_assets.local_api.json_values import is_int
from batch_assets.local_api.local_models.rejections import (
    RequestRejected,
    missing_parameter,
    wrong_type,
)


def content_parts(content: object) -> tuple[list[str], int]:
    """Return the texts and the image count of a message content (str or list of parts)."""
    if isinstance(content, str):
        return [content], 0
    texts: list[str] = []
    images = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(part.get("refusal"), str):
                    texts.append(part["refusal"])
                elif part.get("type") in ("image_url", "input_image", "image"):
                    images += 1
    return texts, images


def _prompts(value: object) -> list[str | list[int]] | None:
    """Normalise a prompt/input: str, list of str, token array or list of token arrays."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(is_int(v) for v in value):
        return [value]
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, list) and v and all(is_int(t) for t in v) for v in value):
        return list(value)
    return None


def last_user_text(items: list[Any]) -> str:
    """Return the text of the last user message (else of the last message)."""

    def text_of(item: object) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, dict):
            return " ".join(content_parts(item.get("content"))[0])
        return ""

    users = [
        i
        for i in items
        if isinstance(i, str) or (isinstance(i, dict) and i.get("role", "user") == "user")
    ]
    pool = users or items
    return text_of(pool[-1]) if pool else ""


def all_texts(items: list[Any]) -> list[str]:
    """Collect every text of a list of messages/items."""
    texts: list[str] = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict):
            texts.extend(content_parts(item.get("content"))[0])
    return texts


def check_prompts(body: dict[str, Any], key: str) -> list[str | list[int]]:
    """Return the normalised prompt/input list or refuse the body."""
    value = body.get(key)
    if value is None:
        raise missing_parameter(key)
    prompts = _prompts(value)
    if prompts is None:
        if isinstance(value, list) and not value:
            raise RequestRejected(
                f"Invalid '{key}': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param=key,
                code="empty_array",
            )
        raise wrong_type(
            key,
            "one of a string, array of strings, array of integers, or array of arrays of integers",
            value,
        )
    return prompts


def moderation_inputs(value: object) -> list[tuple[list[str], int]]:
    """Split a moderation input into results: one per string, one for a list of parts."""
    if isinstance(value, str):
        return [([value], 0)]
    if not isinstance(value, list) or not value:
        return []
    if all(isinstance(v, str) for v in value):
        return [([v], 0) for v in value]
    if all(isinstance(v, dict) for v in value):
        return [content_parts(value)]
    return []
