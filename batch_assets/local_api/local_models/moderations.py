"""The /v1/moderations endpoint."""

import re
from typing import Any

from batch_assets.local_api import ids
from batch_assets.local_api.json_schema_instance import GenerationBudget
from batch_assets.local_api.local_models.answer_text import stable_digest
from batch_assets.local_api.local_models.parameters import DEFAULT_MODERATION_MODEL
from batch_assets.local_api.local_models.rejections import (
    RequestRejected,
    missing_parameter,
    wrong_type,
)
from batch_assets.local_api.local_models.request_inputs import moderation_inputs

MODERATION_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_IMAGE_MODERATED = frozenset(
    {
        "self-harm",
        "self-harm/intent",
        "self-harm/instructions",
        "sexual",
        "violence",
        "violence/graphic",
    }
)
_MODERATION_TRIGGERS: dict[str, re.Pattern[str]] = {
    "harassment": re.compile(r"\b(idiot|moron|imbecile)s?\b"),
    "harassment/threatening": re.compile(r"\b(i will|i'll|i am going to) (kill|hurt|find) you\b"),
    "hate": re.compile(r"\b(subhumans?|exterminate them)\b"),
    "hate/threatening": re.compile(r"\bexterminate them\b"),
    "illicit": re.compile(r"\b(shoplift\w*|launder(ing)? money|cook meth)\b"),
    "illicit/violent": re.compile(r"\b(build|make) a (bomb|pipe bomb)\b"),
    "self-harm": re.compile(r"\b(suicide|kill myself|self-harm|cut myself)\b"),
    "self-harm/intent": re.compile(r"\b(kill myself|want to die|end my life)\b"),
    "self-harm/instructions": re.compile(r"\bhow to (kill myself|commit suicide)\b"),
    "sexual": re.compile(r"\b(porn\w*|explicit sex)\b"),
    "violence": re.compile(r"\b(kill(s|ed|ing)?|murder\w*|stab(s|bed|bing)?|shoot(s|ing)?)\b"),
    "violence/graphic": re.compile(r"\b(gore|gory|dismember\w*|mutilat\w*|disembowel\w*)\b"),
}
_MODERATION_PARENTS = {
    "harassment/threatening": "harassment",
    "hate/threatening": "hate",
    "illicit/violent": "illicit",
    "self-harm/intent": "self-harm",
    "self-harm/instructions": "self-harm",
    "violence/graphic": "violence",
}


def _moderation_result(model: str, texts: list[str], images: int) -> dict[str, Any]:
    """Score one input: tiny seeded scores, high ones where a trigger phrase appears."""
    text = " ".join(texts).lower()
    scores: dict[str, float] = {}
    for category in MODERATION_CATEGORIES:
        fraction = int(stable_digest(model, text, images, category)[:12], 16) / 16**12
        trigger = _MODERATION_TRIGGERS.get(category)
        if trigger is not None and trigger.search(text):
            scores[category] = 0.9 + 0.0999 * fraction
        else:
            scores[category] = 10 ** (-6 + 3.5 * fraction)
    for child, parent in _MODERATION_PARENTS.items():
        if scores[child] >= 0.5:
            scores[parent] = max(scores[parent], scores[child])
    applied: dict[str, list[str]] = {}
    for category in MODERATION_CATEGORIES:
        kinds = ["text"] if texts else []
        if images and category in _IMAGE_MODERATED:
            kinds.append("image")
        applied[category] = kinds
    flags = {category: scores[category] >= 0.5 for category in MODERATION_CATEGORIES}
    return {
        "flagged": any(flags.values()),
        "categories": flags,
        "category_scores": scores,
        "category_applied_input_types": applied,
    }


def answer_moderations(
    body: dict[str, Any], created: int, _budget: GenerationBudget
) -> dict[str, Any]:
    """Answer /v1/moderations with one result per input."""
    del created  # moderations carry no timestamp
    model = body.get("model", DEFAULT_MODERATION_MODEL)
    if not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    value = body.get("input")
    if value is None:
        raise missing_parameter("input")
    inputs = moderation_inputs(value)
    if not inputs:
        if isinstance(value, list) and not value:
            raise RequestRejected(
                "Invalid 'input': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="input",
                code="empty_array",
            )
        raise wrong_type("input", "one of a string, array of strings, or array of objects", value)
    return {
        "id": ids.moderation_id(),
        "model": model,
        "results": [_moderation_result(model, texts, images) for texts, images in inputs],
    }
