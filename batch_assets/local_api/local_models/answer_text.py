"""The text of an answer: digests and seeds, the canned sentence, budget clips and stops."""

import hashlib
import json
import json.encoder
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

import msgspec

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
# msgpack with every object's keys sorted: 1, 1.0 and true differ, and so do NaN and null.
_SORTED_PACKER = msgspec.msgpack.Encoder(order="sorted")
# A byte no msgpack value starts with: it marks a part written as canonical JSON instead.
_JSON_PART = b"\xc1"


class Shared(NamedTuple):
    """A digest part the requests of one template share (its digest is its value's)."""

    value: object


def stable_digest(*parts: object) -> str:
    """Hash JSON-able parts into a stable hex digest, whatever the order of their keys.

    The blake2b (16 bytes) of the parts as one msgpack array with sorted keys; a part msgpack
    cannot hold (a lone surrogate, an integer past 64 bits) is written in the array as
    `_JSON_PART`, its length and its canonical JSON. Parts wrapped in `Shared` count as their
    values.
    """
    values = [part.value if type(part) is Shared else part for part in parts]
    try:
        packed = _SORTED_PACKER.encode(values)
    except (TypeError, OverflowError, UnicodeEncodeError, ValueError):
        packed = _array_head(len(values)) + b"".join(map(packed_digest_part, values))
    return hashlib.blake2b(packed, digest_size=16).hexdigest()


def _array_head(size: int) -> bytes:
    """The msgpack head of an array of `size` items."""
    if size < 16:
        return bytes([0x90 + size])
    return (
        b"\xdc" + size.to_bytes(2, "big") if size < 1 << 16 else b"\xdd" + size.to_bytes(4, "big")
    )


def packed_digest_part(value: object) -> bytes:
    """A value's bytes in the digest: sorted msgpack, else the marked canonical JSON."""
    try:
        return _SORTED_PACKER.encode(value)
    except (TypeError, OverflowError, UnicodeEncodeError, ValueError):
        text = _CANONICAL(value).encode("utf-8", "surrogatepass")
        return _JSON_PART + len(text).to_bytes(8, "little") + text


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
