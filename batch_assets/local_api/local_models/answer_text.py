"""The text of an answer: digests and seeds, the canned sentence, budget clips and stops."""

import hashlib
import json
from typing import Any

from batch_assets.local_api.local_models.token_counting import count_tokens

_ANSWER_TEMPLATES = (
    "Here is a short answer about {topic}.",
    "In short, {topic} comes down to a few key points.",
    "A concise reply to {topic}: it depends on the details given.",
    "Summary: the request {topic} has a clear and simple answer.",
)


def stable_digest(*parts: object) -> str:
    """Hash JSON-able parts into a stable hex digest."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def system_fingerprint(model: str) -> str:
    """Make a stable system_fingerprint per model."""
    return "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]


def _topic(text: str) -> str:
    """Quote the first words of a user text (or say "your request")."""
    words = text.split()
    if not words:
        return "your request"
    head = " ".join(words[:8])
    return f'"{head} ..."' if len(words) > 8 else f'"{head}"'


def canned_sentence(text: str, digest: str, variant: int) -> str:
    """Answer with a short deterministic sentence about the text."""
    template = _ANSWER_TEMPLATES[(int(digest[:8], 16) + variant) % len(_ANSWER_TEMPLATES)]
    return template.format(topic=_topic(text))


def answer_seed(digest: str, variant: int) -> int:
    """Turn a digest and a variant number into a generator seed."""
    return int(digest[:16], 16) + variant


def clip_to_budget(text: str, budget: int | None) -> tuple[str, bool]:
    """Cut text to a token budget; say whether it was cut."""
    if budget is None or count_tokens(text) <= budget:
        return text, False
    return text[: max(budget, 0) * 4], True


def apply_stop(text: str, stop: object) -> str:
    """Cut text before the first stop sequence it contains."""
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cuts = [text.find(s) for s in sequences if isinstance(s, str) and s and s in text]
    return text[: min(cuts)] if cuts else text


def served_tier(body: dict[str, Any]) -> str:
    """Report the tier that served the request ("auto" is served as "default")."""
    tier = body.get("service_tier")
    return tier if tier in ("flex", "priority", "scale") else "default"
