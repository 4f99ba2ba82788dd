"""The text of an answer: digests and seeds, the canned sentence, budget clips and stops."""

import hashlib
import json
import json.encoder
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

from batch_assets.local_api.json_codec import value_key
from batch_assets.local_api.local_models.body_walk import is_shared_value
from batch_assets.local_api.local_models.token_counting import count_tokens

_ANSWER_TEMPLATES = (
    "Here is a short answer about {topic}.",
    "In short, {topic} comes down to a few key points.",
    "A concise reply to {topic}: it depends on the details given.",
    "Summary: the request {topic} has a clear and simple answer.",
)


def _canonical_writer() -> Callable[[object], str]:
    """What `json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)` writes.

    The standard library's C encoder is built once (json.dumps builds one per call); without
    it, json.dumps's own encoder. No circular check: values come from JSON text.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=repr).encode
    encoder = make(None, repr, json.encoder.encode_basestring, None, ": ", ", ", True, False, True)
    return lambda value: "".join(encoder(value, 0))


_CANONICAL = _canonical_writer()
# Canonical JSON of parts that every request of a template shares (a schema, the tools).
_SHARED_JSON: dict[bytes, str] = {}
_SHARED_JSON_SIZE = 256
# The same by the value object itself (kept alive here), for values met again as they are.
_SHARED_OBJECTS: dict[int, tuple[object, str]] = {}


class Shared(NamedTuple):
    """A digest part the requests of one template share: its canonical JSON is kept."""

    value: object


def stable_digest(*parts: object) -> str:
    """Hash JSON-able parts into a stable hex digest: the sha256 of their canonical JSON list.

    Parts wrapped in `Shared` are written as their values; the digest is the same either way.
    """
    canonical = "[" + ", ".join(map(_canonical_json, parts)) + "]"
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical_json(part: object) -> str:
    """One part's canonical JSON (sorted keys, no ASCII escapes); a `Shared` one from the cache."""
    if part is None:
        return "null"
    if type(part) is not Shared:
        return _CANONICAL(part)
    if part.value is None:
        return "null"
    shared = is_shared_value(part.value)
    same = _SHARED_OBJECTS.get(id(part.value)) if shared else None
    if same is not None and same[0] is part.value:
        return same[1]
    key = value_key(part.value)
    if key is None:
        return _CANONICAL(part.value)
    written = _SHARED_JSON.get(key)
    if written is None:
        written = _CANONICAL(part.value)
        if len(_SHARED_JSON) >= _SHARED_JSON_SIZE:
            _SHARED_JSON.clear()
        _SHARED_JSON[key] = written
    if shared:
        if len(_SHARED_OBJECTS) >= _SHARED_JSON_SIZE:
            _SHARED_OBJECTS.clear()
        _SHARED_OBJECTS[id(part.value)] = (part.value, written)
    return written


@lru_cache(maxsize=256)
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
