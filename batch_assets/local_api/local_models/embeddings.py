"""The /v1/embeddings endpoint."""

import base64
import hashlib
import json
import math
import re
import struct
import sys
from array import array
from functools import lru_cache
from typing import Any

from batch_assets.local_api.json_schema_instance import GenerationBudget
from batch_assets.local_api.json_values import is_int
from batch_assets.local_api.local_models.parameters import int_param, require_model
from batch_assets.local_api.local_models.rejections import RequestRejected, bad_value
from batch_assets.local_api.local_models.request_inputs import check_prompts
from batch_assets.local_api.local_models.token_counting import count_prompt_tokens, count_tokens

EMBEDDING_MAX_INPUTS = 2048
EMBEDDING_MAX_INPUT_TOKENS = 8192
DEFAULT_EMBEDDING_DIMENSIONS = 1536
EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}

# Vectors are built in int16 noise units (uniform in +-32768) before normalising; each word adds
# this weight (8x the noise amplitude) at a few hashed slots.
_EMBEDDING_WORD_WEIGHT = 8 * 32768
_EMBEDDING_WORD_SLOTS = 16


def count_embedding_inputs(body: dict) -> int:
    """Count the inputs of an embeddings body (a token array counts as one input)."""
    value = body.get("input") if isinstance(body, dict) else None
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        return 1 if value and all(is_int(v) for v in value) else len(value)
    return 0


def _embedding_dimensions(model: str) -> int:
    """Return a model's native embedding size (1536 unless it is a -3-large model)."""
    for name, size in EMBEDDING_DIMENSIONS.items():
        if name in model:
            return size
    return DEFAULT_EMBEDDING_DIMENSIONS


@lru_cache(maxsize=65536)
def _word_slots(model: str, word: str, size: int) -> tuple[tuple[int, int], ...]:
    """Map a word to a few signed vector slots (feature hashing): shared words mean similarity."""
    raw = hashlib.blake2b(f"{model}\x00{word}".encode("utf-8", "surrogatepass"), digest_size=64)
    numbers = struct.unpack(f"<{_EMBEDDING_WORD_SLOTS}I", raw.digest())
    weight = _EMBEDDING_WORD_WEIGHT
    return tuple(((n >> 1) % size, weight if n & 1 else -weight) for n in numbers)


def _embedding_bytes(model: str, item: str | list[int], size: int, dimensions: int) -> bytes:
    """Pack one input's unit-norm vector as little-endian float32 (first `dimensions` of it)."""
    key = item if isinstance(item, str) else json.dumps(item)
    noise = array("h")
    noise.frombytes(
        hashlib.shake_256(f"{model}\x00{key}".encode("utf-8", "surrogatepass")).digest(2 * size)
    )
    if sys.byteorder == "big":
        noise.byteswap()  # the byte stream is read as little-endian on every platform
    vector = noise.tolist()
    words = re.findall(r"\w+", key.lower()) if isinstance(item, str) else [str(t) for t in item]
    for word in words:
        for slot, weight in _word_slots(model, word, size):
            vector[slot] += weight
    del vector[dimensions:]
    scale = 1.0 / (math.hypot(*vector) or 1.0)
    return struct.pack(f"<{dimensions}f", *[v * scale for v in vector])


def answer_embeddings(
    body: dict[str, Any], created: int, _budget: GenerationBudget
) -> dict[str, Any]:
    """Answer /v1/embeddings with a list of embedding objects."""
    del created  # embeddings carry no timestamp
    model = require_model(body)
    inputs = check_prompts(body, "input")
    if len(inputs) > EMBEDDING_MAX_INPUTS:
        raise RequestRejected(
            f"Invalid 'input': array too long. Expected an array with maximum length "
            f"{EMBEDDING_MAX_INPUTS}, but got an array with length {len(inputs)} instead.",
            param="input",
            code="array_above_max_length",
        )
    for item in inputs:
        if item == "":
            raise RequestRejected(
                "'$.input' is invalid. Please check the API reference: "
                "https://platform.openai.com/docs/api-reference.",
                param="input",
                code="invalid_value",
            )
        tokens = count_tokens(item) if isinstance(item, str) else len(item)
        if tokens > EMBEDDING_MAX_INPUT_TOKENS:
            raise RequestRejected(
                f"This model's maximum context length is {EMBEDDING_MAX_INPUT_TOKENS} tokens, "
                f"however you requested {tokens} tokens ({tokens} in your prompt; 0 for the "
                "completion). Please reduce your prompt; or completion length."
            )
    size = _embedding_dimensions(model)
    dimensions = int_param(body, "dimensions", low=1)
    if dimensions is not None and "ada" in model:
        raise RequestRejected(
            "This model does not support specifying dimensions.", param="dimensions"
        )
    if dimensions is not None and dimensions > size:
        raise RequestRejected(
            f"Invalid value for 'dimensions' = {dimensions}. Must be less than or equal to {size}.",
            param="dimensions",
            code="invalid_value",
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad_value("encoding_format", encoding, ("float", "base64"))
    data = []
    for index, item in enumerate(inputs):
        packed = _embedding_bytes(model, item, size, dimensions or size)
        if encoding == "base64":
            embedding: list[float] | str = base64.b64encode(packed).decode("ascii")
        else:
            embedding = list(struct.unpack(f"<{len(packed) // 4}f", packed))
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    prompt_tokens = count_prompt_tokens(body.get("input"))
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
