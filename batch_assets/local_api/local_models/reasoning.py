"""Reasoning models: which models reason and the reasoning tokens an effort spends."""

import re
from functools import lru_cache

REASONING_TOKENS = {"none": 0, "minimal": 0, "low": 64, "medium": 192, "high": 512, "xhigh": 1024}


@lru_cache(maxsize=256)
def is_reasoning_model(model: str) -> bool:
    """Tell whether a model spends reasoning tokens (o-series and gpt-5 except the chat ones)."""
    name = model.removeprefix("ft:").lower()
    return bool(re.match(r"(o\d|gpt-5)", name)) and "chat" not in name


def reasoning_tokens(model: str, effort: object) -> int:
    """Return the reasoning tokens a model spends at an effort (0 for non-reasoning models)."""
    if not is_reasoning_model(model):
        return 0
    default = REASONING_TOKENS["medium"]
    return REASONING_TOKENS.get(effort, default) if isinstance(effort, str) else default
