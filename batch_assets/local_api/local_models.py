"""Deterministic stand-ins for OpenAI models: answer batch request bodies in the real shape."""

import base64
import hashlib
import json
import math
import re
import struct
import sys
from array import array
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, NamedTuple

from batch_assets.local_api import ids
from batch_assets.local_api.errors import APIError
from batch_assets.local_api.json_schema_instance import (
    DeadlinePassed,
    GenerationBudget,
    SchemaRefused,
    fits_double,
    instance_for,
)

__all__ = [
    "BATCH_ANSWER_SECONDS",
    "MAX_BODY_DEPTH",
    "SUPPORTED_ENDPOINTS",
    "AnswerTimedOut",
    "RequestRejected",
    "count_embedding_inputs",
    "count_tokens",
    "estimate_input_tokens",
    "holds_lone_surrogate",
    "model_of",
    "respond",
]

SUPPORTED_ENDPOINTS: tuple[str, ...] = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
)

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
IMAGE_TOKENS = 85
MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3
MAX_CHOICES = 128
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
RESPONSES_MIN_OUTPUT_TOKENS = 16
EMBEDDING_MAX_INPUTS = 2048
EMBEDDING_MAX_INPUT_TOKENS = 8192
DEFAULT_EMBEDDING_DIMENSIONS = 1536
EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
REASONING_TOKENS = {"none": 0, "minimal": 0, "low": 64, "medium": 192, "high": 512, "xhigh": 1024}
# JSON nesting a request body may have (OpenAI's schemas nest 10 objects, about 40 JSON levels).
MAX_BODY_DEPTH = 100
# A cut answer is built this far past its max_tokens (and any stop sequence), then clipped.
_CUT_SLACK_CHARS = 64
_SHOWN_PATH_PARTS = 8
_ATOMS = frozenset({str, bool, type(None)})
# A batch request's answer stops this long after it starts (its work budget ends it far sooner).
BATCH_ANSWER_SECONDS = 5.0
# A UTF-16 surrogate on its own: JSON may escape one (\ud800) but it is no Unicode character.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _names(text: str) -> frozenset[str]:
    """Split a space-separated list of parameter names."""
    return frozenset(text.split())


# Top-level body keys each endpoint accepts (from the OpenAPI spec, old and new); others are
# rejected like the real API does, which catches typos such as "max_token".
KNOWN_PARAMETERS: dict[str, frozenset[str]] = {
    "/v1/chat/completions": _names(
        "audio frequency_penalty function_call functions logit_bias logprobs max_completion_tokens "
        "max_tokens messages metadata modalities model moderation n parallel_tool_calls prediction "
        "presence_penalty prompt_cache_key prompt_cache_options prompt_cache_retention "
        "reasoning_effort response_format safety_identifier seed service_tier stop store stream "
        "stream_options temperature tool_choice tools top_logprobs top_p user verbosity "
        "web_search_options"
    ),
    "/v1/responses": _names(
        "background context_management conversation include input instructions "
        "max_output_tokens max_tool_calls metadata model moderation parallel_tool_calls "
        "previous_response_id prompt prompt_cache_key prompt_cache_options "
        "prompt_cache_retention reasoning safety_identifier service_tier store stream "
        "stream_options temperature text tool_choice tools top_logprobs top_p truncation user"
    ),
    "/v1/embeddings": _names("dimensions encoding_format input model user"),
    "/v1/completions": _names(
        "best_of echo frequency_penalty logit_bias logprobs max_tokens model n "
        "presence_penalty prompt seed stop stream stream_options suffix temperature top_p user"
    ),
    "/v1/moderations": _names("input model"),
}

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

_ANSWER_TEMPLATES = (
    "Here is a short answer about {topic}.",
    "In short, {topic} comes down to a few key points.",
    "A concise reply to {topic}: it depends on the details given.",
    "Summary: the request {topic} has a clear and simple answer.",
)
_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
# Vectors are built in int16 noise units (uniform in +-32768) before normalising; each word adds
# this weight (8x the noise amplitude) at a few hashed slots.
_EMBEDDING_WORD_WEIGHT = 8 * 32768
_EMBEDDING_WORD_SLOTS = 16


class RequestRejected(APIError):
    """A request body the endpoint refuses (answered as HTTP 400 with the error envelope)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int = 400,
        type: str = "invalid_request_error",
    ) -> None:
        """Keep the four envelope fields and the HTTP status."""
        super().__init__(status_code, message, type=type, param=param, code=code)


class AnswerTimedOut(RequestRejected):
    """The answer was not built by its deadline (answered as HTTP 504)."""

    def __init__(self) -> None:
        """Say that the local model ran out of time."""
        super().__init__(
            "The local model did not answer within its time limit; the request timed out.",
            code="timeout",
            status_code=504,
            type="server_error",
        )


def respond(endpoint: str, body: dict, *, created: int, deadline: float | None = None) -> dict:
    """Answer one request body as the real endpoint would (200 body), or raise RequestRejected.

    Past `deadline` (a time.monotonic() value) building the answer stops with AnswerTimedOut.
    """
    handler = _HANDLERS.get(endpoint)
    if handler is None:
        raise RequestRejected(f"Invalid URL (POST {endpoint})", status_code=404)
    if not isinstance(body, dict):
        raise RequestRejected(
            f"Invalid type for body: expected an object, but got {_describe(body)} instead.",
            code="invalid_type",
        )
    _check_body_values(body)
    _reject_unknown_parameters(endpoint, body)
    try:
        return handler(body, created, GenerationBudget(deadline=deadline))
    except DeadlinePassed:
        raise AnswerTimedOut from None


def holds_lone_surrogate(text: str) -> bool:
    """Tell whether a string holds a lone UTF-16 surrogate (which is not valid Unicode)."""
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


def count_tokens(text: str) -> int:
    """Estimate tokens as one per 4 characters, rounded up (0 only for empty text)."""
    return (len(text) + 3) // 4 if isinstance(text, str) else 0


def estimate_input_tokens(endpoint: str, body: dict) -> int:
    """Estimate the prompt tokens of a request body (best effort, never raises)."""
    if not isinstance(body, dict):
        return 0
    if endpoint == "/v1/chat/completions":
        return _messages_tokens(body.get("messages"))
    if endpoint == "/v1/responses":
        return _responses_input_tokens(body)
    if endpoint == "/v1/completions":
        return _prompt_tokens(body.get("prompt"))
    if endpoint == "/v1/embeddings":
        return _prompt_tokens(body.get("input"))
    if endpoint == "/v1/moderations":
        return sum(sum(map(count_tokens, t)) for t, _ in _moderation_inputs(body.get("input")))
    return 0


def model_of(endpoint: str, body: dict) -> str | None:
    """Return the request's model (moderations default to omni-moderation-latest)."""
    model = body.get("model") if isinstance(body, dict) else None
    if isinstance(model, str):
        return model
    if endpoint == "/v1/moderations":
        return DEFAULT_MODERATION_MODEL
    return None


def count_embedding_inputs(body: dict) -> int:
    """Count the inputs of an embeddings body (a token array counts as one input)."""
    value = body.get("input") if isinstance(body, dict) else None
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        return 1 if value and all(_is_int(v) for v in value) else len(value)
    return 0


# --- shared helpers ---------------------------------------------------------------------------


def _check_body_values(body: dict[str, Any]) -> None:
    """Refuse a body nested deeper than MAX_BODY_DEPTH, or holding a lone surrogate (in a string
    or key) or a number outside a double.

    One walk over the containers; containers of plain ASCII strings, booleans, nulls or integers
    are passed at C speed, and a path is spelt out only for an error.
    """
    stack: list[tuple[object, int, _Path]] = [(body, 1, None)]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_BODY_DEPTH:
            param = _param_path(path)
            raise RequestRejected(
                f"Invalid '{param}': the request nests JSON deeper than {MAX_BODY_DEPTH} levels.",
                param=param,
                code="invalid_value",
            )
        if type(value) is dict:
            pairs: Iterable[tuple[Any, Any]] = value.items()
            if not "".join(value).isascii():
                _check_keys(value, path)
        elif _plain_list(value):
            continue
        else:
            pairs = enumerate(value)
        for key, item in pairs:
            kind = type(item)
            if kind is str:
                if holds_lone_surrogate(item):
                    raise _lone_surrogate(_param_path((path, key)))
            elif kind is dict or kind is list:
                stack.append((item, depth + 1, (path, key)))
            elif (kind is float or kind is int) and not fits_double(item):
                raise _outside_double(_param_path((path, key)), item)


_Path = tuple["_Path", str | int] | None  # (parent path, key or index)


def _check_keys(value: dict[str, Any], path: _Path) -> None:
    """Refuse an object with a key that holds a lone surrogate, naming the key (escaped)."""
    for key in value:
        if holds_lone_surrogate(key):
            raise _lone_surrogate(_param_path((path, key)))


def _plain_list(values: list[Any]) -> bool:
    """Tell whether a list holds only ASCII strings/booleans/nulls, or only integers in a double."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return "".join(values).isascii()
    if kinds <= _ATOMS:
        return str not in kinds
    return kinds == {int} and fits_double(max(values)) and fits_double(min(values))


def _outside_double(param: str, number: float) -> RequestRejected:
    """Build the rejection of a number no double can hold, naming where it is."""
    if isinstance(number, float):
        got = "NaN" if math.isnan(number) else f"{'-' if number < 0 else ''}infinity"
    else:
        got = f"an integer of {len(str(abs(number)))} digits"
    return RequestRejected(
        f"Invalid '{param}': number out of range. Expected a number that fits in a double "
        f"(magnitude at most 1.8e308), but got {got} instead.",
        param=param,
        code="invalid_value",
    )


def _lone_surrogate(param: str) -> RequestRejected:
    """Build the rejection of a string or key holding a lone surrogate, naming where it is."""
    return RequestRejected(
        f"Invalid '{param}': the string holds a lone UTF-16 surrogate, which is not valid "
        "Unicode. Expected a string of Unicode characters.",
        param=param,
        code="invalid_value",
    )


def _param_path(path: _Path) -> str:
    """Write a body path as OpenAI names params: "messages[0].content" (long ones cut).

    Keys are cut to 64 characters and any lone surrogate in them is written as its escape.
    """
    parts: list[str | int] = []
    while path is not None:
        path, key = path
        parts.append(key)
    parts.reverse()
    text = ""
    for part in parts[:_SHOWN_PATH_PARTS]:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = _LONE_SURROGATE.sub(lambda found: f"\\u{ord(found[0]):04x}", part[:64])
            text += f".{name}" if text else name
    return text + ("..." if len(parts) > _SHOWN_PATH_PARTS else "")


def _is_int(value: object) -> bool:
    """Tell whether a JSON value is an integer (bools are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """Tell whether a JSON value is a number (bools are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value: object) -> str:
    """Name a JSON value's type the way OpenAI error messages do."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _digest(*parts: object) -> str:
    """Hash JSON-able parts into a stable hex digest."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _fingerprint(model: str) -> str:
    """Make a stable system_fingerprint per model."""
    return "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]


def _missing(param: str) -> RequestRejected:
    """Build the missing_required_parameter rejection."""
    return RequestRejected(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _wrong_type(param: str, expected: str, value: object) -> RequestRejected:
    """Build the invalid_type rejection."""
    return RequestRejected(
        f"Invalid type for '{param}': expected {expected}, but got {_describe(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _bad_value(param: str, value: object, supported: tuple[str, ...]) -> RequestRejected:
    """Build the invalid_value rejection listing the supported values."""
    quoted = [f"'{s}'" for s in supported]
    listing = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    return RequestRejected(
        f"Invalid value: '{value}'. Supported values are: {listing}.",
        param=param,
        code="invalid_value",
    )


def _reject_unknown_parameters(endpoint: str, body: dict[str, Any]) -> None:
    """Refuse top-level keys the endpoint does not know, with the endpoint's own wording."""
    unknown = [key for key in body if key not in KNOWN_PARAMETERS[endpoint]]
    if not unknown:
        return
    if endpoint == "/v1/responses":
        raise RequestRejected(
            f"Unknown parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter"
        )
    raise RequestRejected(f"Unrecognized request argument supplied: {', '.join(unknown)}")


def _require_model(body: dict[str, Any]) -> str:
    """Return body["model"] or refuse the body."""
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    if not model:
        raise RequestRejected(
            "Invalid 'model': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="model",
            code="empty_string",
        )
    return model


def _int_param(body: dict[str, Any], key: str, *, low: int, high: int | None = None) -> int | None:
    """Return an optional integer parameter, refusing wrong types and out-of-range values."""
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value):
        raise _wrong_type(key, "an integer", value)
    if value < low:
        raise RequestRejected(
            f"Invalid '{key}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            param=key,
            code="integer_below_min_value",
        )
    if high is not None and value > high:
        raise RequestRejected(
            f"Invalid '{key}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            param=key,
            code="integer_above_max_value",
        )
    return value


def _number_param(body: dict[str, Any], key: str, *, low: float, high: float) -> float | None:
    """Return an optional number parameter, refusing wrong types and out-of-range values."""
    value = body.get(key)
    if value is None:
        return None
    if not _is_number(value):
        raise _wrong_type(key, "a decimal", value)
    if value < low:
        raise RequestRejected(
            f"Invalid '{key}': decimal below minimum value. Expected a value >= {low:g}, "
            f"but got {value} instead.",
            param=key,
            code="decimal_below_min_value",
        )
    if value > high:
        raise RequestRejected(
            f"Invalid '{key}': decimal above maximum value. Expected a value <= {high:g}, "
            f"but got {value} instead.",
            param=key,
            code="decimal_above_max_value",
        )
    return float(value)


def _is_reasoning_model(model: str) -> bool:
    """Tell whether a model spends reasoning tokens (o-series and gpt-5 except the chat ones)."""
    name = model.removeprefix("ft:").lower()
    return bool(re.match(r"(o\d|gpt-5)", name)) and "chat" not in name


def _reasoning_tokens(model: str, effort: object) -> int:
    """Return the reasoning tokens a model spends at an effort (0 for non-reasoning models)."""
    if not _is_reasoning_model(model):
        return 0
    default = REASONING_TOKENS["medium"]
    return REASONING_TOKENS.get(effort, default) if isinstance(effort, str) else default


def _content_parts(content: object) -> tuple[list[str], int]:
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


def _item_tokens(item: object) -> int:
    """Estimate one message or input item: its texts, images, tool calls and overhead."""
    if isinstance(item, str):
        return MESSAGE_OVERHEAD_TOKENS + count_tokens(item)
    if not isinstance(item, dict):
        return 0
    texts, images = _content_parts(item.get("content"))
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


def _messages_tokens(messages: object) -> int:
    """Estimate chat messages (per-message overhead plus reply priming, as tiktoken recipes do)."""
    if not isinstance(messages, list) or not messages:
        return 0
    return sum(_item_tokens(m) for m in messages) + REPLY_PRIMING_TOKENS


def _responses_input_tokens(body: dict[str, Any]) -> int:
    """Estimate a /v1/responses body: instructions plus input (str or list of items)."""
    items: list[object] = []
    if isinstance(body.get("instructions"), str):
        items.append(body["instructions"])
    value = body.get("input")
    if isinstance(value, str):
        items.append(value)
    elif isinstance(value, list):
        items.extend(value)
    return _messages_tokens(items)


def _prompts(value: object) -> list[str | list[int]] | None:
    """Normalise a prompt/input: str, list of str, token array or list of token arrays."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(_is_int(v) for v in value):
        return [value]
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value):
        return list(value)
    return None


def _prompt_tokens(value: object) -> int:
    """Count the tokens of a prompt/input in any of its accepted forms (0 when malformed)."""
    if isinstance(value, list) and not all(_is_int(v) for v in value):
        return sum(_single_prompt_tokens(v) for v in value)
    return _single_prompt_tokens(value)


def _single_prompt_tokens(value: object) -> int:
    """Count one prompt: a string or a token array (0 for anything else, however nested)."""
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, list) and value and all(_is_int(v) for v in value):
        return len(value)
    return 0


def _topic(text: str) -> str:
    """Quote the first words of a user text (or say "your request")."""
    words = text.split()
    if not words:
        return "your request"
    head = " ".join(words[:8])
    return f'"{head} ..."' if len(words) > 8 else f'"{head}"'


def _sentence(text: str, digest: str, variant: int) -> str:
    """Answer with a short deterministic sentence about the text."""
    template = _ANSWER_TEMPLATES[(int(digest[:8], 16) + variant) % len(_ANSWER_TEMPLATES)]
    return template.format(topic=_topic(text))


def _seed(digest: str, variant: int) -> int:
    """Turn a digest and a variant number into a generator seed."""
    return int(digest[:16], 16) + variant


def _clip(text: str, budget: int | None) -> tuple[str, bool]:
    """Cut text to a token budget; say whether it was cut."""
    if budget is None or count_tokens(text) <= budget:
        return text, False
    return text[: max(budget, 0) * 4], True


def _apply_stop(text: str, stop: object) -> str:
    """Cut text before the first stop sequence it contains."""
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cuts = [text.find(s) for s in sequences if isinstance(s, str) and s and s in text]
    return text[: min(cuts)] if cuts else text


class _SchemaSite(NamedTuple):
    """Where a request holds a schema: how errors name it and which param they point at."""

    label: str
    param: str
    code: str | None


class _Generation(NamedTuple):
    """The limits of one answer: the request's shared budget and where a cut answer may stop."""

    budget: GenerationBudget
    truncate_after: int | None = None


def _cut_room(visible_budget: int | None, stop: object) -> int | None:
    """Return how many characters a cut answer needs built before it is clipped (None: all)."""
    if visible_budget is None:
        return None
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    longest = max((len(s) for s in sequences if isinstance(s, str)), default=0)
    return 4 * visible_budget + _CUT_SLACK_CHARS + longest


def _schema_value(
    schema: dict[str, Any], seed: int, generation: _Generation, site: _SchemaSite
) -> str:
    """Build a schema instance as compact JSON, or refuse the request naming the schema."""
    try:
        value = instance_for(
            schema,
            seed=seed,
            budget=generation.budget,
            truncate_after=generation.truncate_after,
        )
    except SchemaRefused as refused:
        raise RequestRejected(
            f"Invalid schema for {site.label}: {refused}.", param=site.param, code=site.code
        ) from None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _render(
    kind: str,
    schema: dict[str, Any] | None,
    text: str,
    seed_of: tuple[str, int],
    generation: _Generation,
    site: _SchemaSite,
) -> str:
    """Write the answer text in the requested format (plain, JSON object or schema instance)."""
    digest, variant = seed_of
    if kind == "json_schema":
        chosen = schema if schema is not None else {"type": "object"}
        return _schema_value(chosen, _seed(digest, variant), generation, site)
    sentence = _sentence(text, digest, variant)
    if kind == "json_object":
        return json.dumps({"answer": sentence}, ensure_ascii=False, separators=(",", ":"))
    return sentence


def _strict_problem(schema: dict[str, Any]) -> str | None:
    """Find the first rule of strict structured outputs that a schema breaks."""
    if schema.get("type") != "object" or "anyOf" in schema:
        kind = schema.get("type", "anyOf" if "anyOf" in schema else None)
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{kind}\"'."
    return _strict_walk(schema, ())


def _strict_walk(node: object, context: tuple[str, ...]) -> str | None:
    """Check one subschema (and its children) for additionalProperties/required rules."""
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if is_object or "properties" in node:
        if node.get("additionalProperties") is not False:
            return (
                f"In context={context!r}, 'additionalProperties' is required to be supplied "
                "and to be false."
            )
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        required = node.get("required") if isinstance(node.get("required"), list) else []
        missing = [name for name in props if name not in required]
        if missing:
            return (
                f"In context={context!r}, 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing '{missing[0]}'."
            )
    children: list[tuple[tuple[str, ...], object]] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(node.get(key), dict):
            children.extend(((*context, key, name), sub) for name, sub in node[key].items())
    if "items" in node:
        children.append(((*context, "items"), node["items"]))
    for key in ("anyOf", "allOf"):
        if isinstance(node.get(key), list):
            children.extend(((*context, key, str(i)), sub) for i, sub in enumerate(node[key]))
    for child_context, child in children:
        problem = _strict_walk(child, child_context)
        if problem is not None:
            return problem
    return None


def _schema_format(
    spec: object, prefix: str, schema_param: str, schema_code: str | None
) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
    """Validate a response_format / text.format; return (kind, schema, echo of the format)."""
    if spec is None:
        return "text", None, {"type": "text"}
    if not isinstance(spec, dict):
        raise _wrong_type(prefix, "an object", spec)
    kind = spec.get("type")
    if kind is None:
        raise _missing(f"{prefix}.type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _bad_value(f"{prefix}.type", kind, ("text", "json_object", "json_schema"))
    if kind != "json_schema":
        return kind, None, {"type": kind}
    # chat nests name/schema under "json_schema"; the responses API puts them on the format itself
    holder = spec if prefix == "text.format" else spec.get("json_schema")
    holder_param = prefix if prefix == "text.format" else f"{prefix}.json_schema"
    if holder is None:
        raise _missing(holder_param)
    if not isinstance(holder, dict):
        raise _wrong_type(holder_param, "an object", holder)
    name = holder.get("name")
    if name is None:
        raise _missing(f"{holder_param}.name")
    if not isinstance(name, str):
        raise _wrong_type(f"{holder_param}.name", "a string", name)
    if not _NAME_PATTERN.match(name):
        raise RequestRejected(
            f"Invalid '{holder_param}.name': string does not match pattern. Expected a string "
            "that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            param=f"{holder_param}.name",
            code="invalid_value",
        )
    schema = holder.get("schema")
    if schema is None and prefix == "text.format":
        raise _missing(f"{holder_param}.schema")
    if schema is not None and not isinstance(schema, dict):
        raise _wrong_type(f"{holder_param}.schema", "an object", schema)
    strict = holder.get("strict") is True
    if strict and schema is not None:
        problem = _strict_problem(schema)
        if problem is not None:
            raise RequestRejected(
                f"Invalid schema for response_format '{name}': {problem}",
                param=schema_param,
                code=schema_code,
            )
    echo: dict[str, Any] = {"type": "json_schema", "name": name}
    if isinstance(holder.get("description"), str):
        echo["description"] = holder["description"]
    echo["schema"] = schema if schema is not None else {}
    echo["strict"] = strict
    return "json_schema", schema, echo


def _mentions_json(texts: list[str]) -> bool:
    """Tell whether any text contains the word "json" (json_object mode requires it)."""
    return any("json" in t.lower() for t in texts)


class _ForcedFunction(NamedTuple):
    """The function tool a request forces, and where its parameters schema is."""

    definition: dict[str, Any]
    site: _SchemaSite


def _forced_function(body: dict[str, Any], nested: bool) -> _ForcedFunction | None:
    """Return the function tool the request forces (tool_choice "required" or a named function)."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return None
    functions: list[_ForcedFunction] = []
    for index, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") == "function":
            definition = tool.get("function") if nested else tool
            if isinstance(definition, dict) and isinstance(definition.get("name"), str):
                where = f"tools[{index}].function" if nested else f"tools[{index}]"
                label = f"function '{definition['name'][:64]}'"
                site = _SchemaSite(label, f"{where}.parameters", "invalid_function_parameters")
                functions.append(_ForcedFunction(definition, site))
    choice = body.get("tool_choice")
    if choice == "required" and functions:
        return functions[0]
    if isinstance(choice, dict) and choice.get("type") == "function":
        named = choice.get("function", {}) if nested else choice
        wanted = named.get("name") if isinstance(named, dict) else None
        return next((f for f in functions if f.definition["name"] == wanted), None)
    return None


def _arguments(forced: _ForcedFunction, seed: int, budget: GenerationBudget) -> str:
    """Make JSON arguments that fit a function tool's parameters schema."""
    parameters = forced.definition.get("parameters")
    schema = parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
    return _schema_value(schema, seed, _Generation(budget), forced.site)


def _echo_tools(tools: object) -> list[Any]:
    """Echo responses tools as the API does, function tools with strict/parameters filled in."""
    if not isinstance(tools, list):
        return []
    echoed: list[Any] = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "function":
            tool = {"parameters": None, "strict": True, **tool}
        echoed.append(tool)
    return echoed


def _service_tier(body: dict[str, Any]) -> str:
    """Report the tier that served the request ("auto" is served as "default")."""
    tier = body.get("service_tier")
    return tier if tier in ("flex", "priority", "scale") else "default"


# --- /v1/chat/completions ----------------------------------------------------------------------


def _check_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the validated chat messages or refuse the body."""
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise RequestRejected(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _wrong_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in _CHAT_ROLES:
            raise _bad_value(f"{where}.role", role, _CHAT_ROLES)
        content = message.get("content")
        if content is None and role != "assistant":
            raise _missing(f"{where}.content")
        if content is not None and not isinstance(content, str | list):
            raise _wrong_type(f"{where}.content", "one of a string or array of objects", content)
    return messages


def _last_user_text(items: list[Any]) -> str:
    """Return the text of the last user message (else of the last message)."""

    def text_of(item: object) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, dict):
            return " ".join(_content_parts(item.get("content"))[0])
        return ""

    users = [
        i
        for i in items
        if isinstance(i, str) or (isinstance(i, dict) and i.get("role", "user") == "user")
    ]
    pool = users or items
    return text_of(pool[-1]) if pool else ""


def _all_texts(items: list[Any]) -> list[str]:
    """Collect every text of a list of messages/items."""
    texts: list[str] = []
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict):
            texts.extend(_content_parts(item.get("content"))[0])
    return texts


def _chat(body: dict[str, Any], created: int, work: GenerationBudget) -> dict[str, Any]:
    """Answer /v1/chat/completions with a chat.completion object."""
    model = _require_model(body)
    messages = _check_messages(body)
    n = _int_param(body, "n", low=1, high=MAX_CHOICES) or 1
    max_tokens = _int_param(body, "max_tokens", low=1)
    max_completion_tokens = _int_param(body, "max_completion_tokens", low=1)
    _number_param(body, "temperature", low=0, high=2)
    _number_param(body, "top_p", low=0, high=1)
    reasoning = _is_reasoning_model(model)
    if reasoning and max_tokens is not None:
        raise RequestRejected(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    kind, schema, format_echo = _schema_format(
        body.get("response_format"), "response_format", "response_format", None
    )
    if kind == "json_object" and not _mentions_json(_all_texts(messages)):
        raise RequestRejected(
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param="messages",
        )
    budget = max_completion_tokens if max_completion_tokens is not None else max_tokens
    thinking = _reasoning_tokens(model, body.get("reasoning_effort"))
    if budget is not None:
        thinking = min(thinking, budget)
    visible_budget = None if budget is None else budget - thinking
    # the answer depends on what the model reads, not on limits, so a cut answer is a prefix
    answer_key = _digest(
        model, messages, body.get("response_format"), body.get("tools"), body.get("seed")
    )
    forced = _forced_function(body, nested=True)
    topic = _last_user_text(messages)
    site = _SchemaSite(
        f"response_format '{format_echo.get('name', '')}'",
        "response_format.json_schema.schema",
        None,
    )
    generation = _Generation(work, _cut_room(visible_budget, body.get("stop")))
    choices = []
    completion_tokens = 0
    for index in range(n):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
        }
        if forced is not None:
            name = forced.definition["name"]
            arguments = _arguments(forced, _seed(answer_key, index), work)
            message["tool_calls"] = [
                {
                    "id": ids.tool_call_id(),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ]
            finish_reason = "tool_calls"
            completion_tokens += thinking + count_tokens(name) + count_tokens(arguments)
        else:
            answer = _render(kind, schema, topic, (answer_key, index), generation, site)
            text = _apply_stop(answer, body.get("stop"))
            content, cut = _clip(text, visible_budget)
            message["content"] = content
            finish_reason = "length" if cut else "stop"
            completion_tokens += thinking + count_tokens(content)
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}
        )
    prompt_tokens = _messages_tokens(messages)
    return {
        "id": ids.chat_completion_id(),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": thinking * n,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": _service_tier(body),
        "system_fingerprint": _fingerprint(model),
    }


# --- /v1/responses -----------------------------------------------------------------------------


def _check_responses_input(body: dict[str, Any]) -> list[Any]:
    """Return the input as a list of items (a str becomes one user message) or refuse it."""
    value = body.get("input")
    if value is None:
        if any(body.get(k) is not None for k in ("prompt", "previous_response_id", "conversation")):
            return []
        raise _missing("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise _wrong_type("input", "one of a string or array of input items", value)
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _wrong_type(f"input[{index}]", "an object", item)
        role = item.get("role")
        if role is not None and role not in ("user", "assistant", "system", "developer"):
            raise _bad_value(
                f"input[{index}].role", role, ("user", "assistant", "system", "developer")
            )
    return value


def _responses(body: dict[str, Any], created: int, work: GenerationBudget) -> dict[str, Any]:
    """Answer /v1/responses with a response object."""
    model = _require_model(body)
    items = _check_responses_input(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str | list):
        raise _wrong_type("instructions", "a string", instructions)
    max_output_tokens = _int_param(body, "max_output_tokens", low=RESPONSES_MIN_OUTPUT_TOKENS)
    temperature = _number_param(body, "temperature", low=0, high=2)
    top_p = _number_param(body, "top_p", low=0, high=1)
    text_options = body.get("text")
    if text_options is not None and not isinstance(text_options, dict):
        raise _wrong_type("text", "an object", text_options)
    text_options = text_options or {}
    kind, schema, format_echo = _schema_format(
        text_options.get("format"), "text.format", "text.format.schema", "invalid_json_schema"
    )
    texts = _all_texts(items) + ([instructions] if isinstance(instructions, str) else [])
    if kind == "json_object" and not _mentions_json(texts):
        raise RequestRejected(
            "Response input messages must contain the word 'json' in some form to use "
            "'text.format' of type 'json_object'.",
            param="input",
        )
    reasoning_options = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    effort = reasoning_options.get("effort")
    thinking = _reasoning_tokens(model, effort)
    if max_output_tokens is not None:
        thinking = min(thinking, max_output_tokens)
    visible_budget = None if max_output_tokens is None else max_output_tokens - thinking
    answer_key = _digest(model, items, instructions, text_options, body.get("tools"))
    forced = _forced_function(body, nested=False)
    if forced is not None:
        name = forced.definition["name"]
        arguments = _arguments(forced, _seed(answer_key, 0), work)
        item: dict[str, Any] = {
            "type": "function_call",
            "id": ids.response_item_id("fc"),
            "call_id": ids.tool_call_id(),
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }
        output_tokens = thinking + count_tokens(name) + count_tokens(arguments)
        cut = False
    else:
        site = _SchemaSite(
            f"response_format '{format_echo.get('name', '')}'",
            "text.format.schema",
            "invalid_json_schema",
        )
        generation = _Generation(work, _cut_room(visible_budget, None))
        answer = _render(kind, schema, _last_user_text(items), (answer_key, 0), generation, site)
        text, cut = _clip(answer, visible_budget)
        item = {
            "type": "message",
            "id": ids.response_item_id("msg"),
            "status": "incomplete" if cut else "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
        output_tokens = thinking + count_tokens(text)
    input_tokens = _responses_input_tokens(body)
    return {
        "id": ids.response_id(),
        "object": "response",
        "created_at": created,
        "status": "incomplete" if cut else "completed",
        "background": body.get("background") is True,
        "completed_at": None if cut else created,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": [item],
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {
            "effort": (effort if isinstance(effort, str) else "medium")
            if _is_reasoning_model(model)
            else None,
            "summary": reasoning_options.get("summary"),
        },
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": _service_tier(body),
        "store": body.get("store", True) is not False,
        "temperature": 1.0 if temperature is None else temperature,
        "text": {"format": format_echo, "verbosity": text_options.get("verbosity", "medium")},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": _echo_tools(body.get("tools")),
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": 1.0 if top_p is None else top_p,
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": thinking},
            "total_tokens": input_tokens + output_tokens,
        },
        "user": body.get("user"),
        "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
    }


# --- /v1/completions ---------------------------------------------------------------------------


def _check_prompts(body: dict[str, Any], key: str) -> list[str | list[int]]:
    """Return the normalised prompt/input list or refuse the body."""
    value = body.get(key)
    if value is None:
        raise _missing(key)
    prompts = _prompts(value)
    if prompts is None:
        if isinstance(value, list) and not value:
            raise RequestRejected(
                f"Invalid '{key}': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param=key,
                code="empty_array",
            )
        raise _wrong_type(
            key,
            "one of a string, array of strings, array of integers, or array of arrays of integers",
            value,
        )
    return prompts


def _completions(body: dict[str, Any], created: int, _budget: GenerationBudget) -> dict[str, Any]:
    """Answer /v1/completions with a text_completion object (one choice per prompt and n)."""
    model = _require_model(body)
    prompts = _check_prompts(body, "prompt")
    n = _int_param(body, "n", low=1, high=MAX_CHOICES) or 1
    max_tokens = _int_param(body, "max_tokens", low=0)
    budget = COMPLETIONS_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    _number_param(body, "temperature", low=0, high=2)
    _number_param(body, "top_p", low=0, high=1)
    echo = body.get("echo") is True
    answer_key = _digest(model, body.get("prompt"), body.get("seed"))
    choices = []
    completion_tokens = 0
    for prompt_index, prompt in enumerate(prompts):
        prompt_text = prompt if isinstance(prompt, str) else ""
        for variant in range(n):
            sentence = " " + _sentence(prompt_text, answer_key, prompt_index * n + variant)
            text, cut = _clip(_apply_stop(sentence, body.get("stop")), budget)
            completion_tokens += count_tokens(text)
            choices.append(
                {
                    "text": prompt_text + text if echo else text,
                    "index": prompt_index * n + variant,
                    "logprobs": None,
                    "finish_reason": "length" if cut else "stop",
                }
            )
    prompt_tokens = _prompt_tokens(body.get("prompt"))
    return {
        "id": ids.completion_id(),
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": _fingerprint(model),
    }


# --- /v1/embeddings ----------------------------------------------------------------------------


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


def _embeddings(body: dict[str, Any], created: int, _budget: GenerationBudget) -> dict[str, Any]:
    """Answer /v1/embeddings with a list of embedding objects."""
    del created  # embeddings carry no timestamp
    model = _require_model(body)
    inputs = _check_prompts(body, "input")
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
    dimensions = _int_param(body, "dimensions", low=1)
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
        raise _bad_value("encoding_format", encoding, ("float", "base64"))
    data = []
    for index, item in enumerate(inputs):
        packed = _embedding_bytes(model, item, size, dimensions or size)
        if encoding == "base64":
            embedding: list[float] | str = base64.b64encode(packed).decode("ascii")
        else:
            embedding = list(struct.unpack(f"<{len(packed) // 4}f", packed))
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    prompt_tokens = _prompt_tokens(body.get("input"))
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# --- /v1/moderations ---------------------------------------------------------------------------


def _moderation_inputs(value: object) -> list[tuple[list[str], int]]:
    """Split a moderation input into results: one per string, one for a list of parts."""
    if isinstance(value, str):
        return [([value], 0)]
    if not isinstance(value, list) or not value:
        return []
    if all(isinstance(v, str) for v in value):
        return [([v], 0) for v in value]
    if all(isinstance(v, dict) for v in value):
        return [_content_parts(value)]
    return []


def _moderation_result(model: str, texts: list[str], images: int) -> dict[str, Any]:
    """Score one input: tiny seeded scores, high ones where a trigger phrase appears."""
    text = " ".join(texts).lower()
    scores: dict[str, float] = {}
    for category in MODERATION_CATEGORIES:
        fraction = int(_digest(model, text, images, category)[:12], 16) / 16**12
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


def _moderations(body: dict[str, Any], created: int, _budget: GenerationBudget) -> dict[str, Any]:
    """Answer /v1/moderations with one result per input."""
    del created  # moderations carry no timestamp
    model = body.get("model", DEFAULT_MODERATION_MODEL)
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    value = body.get("input")
    if value is None:
        raise _missing("input")
    inputs = _moderation_inputs(value)
    if not inputs:
        if isinstance(value, list) and not value:
            raise RequestRejected(
                "Invalid 'input': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="input",
                code="empty_array",
            )
        raise _wrong_type("input", "one of a string, array of strings, or array of objects", value)
    return {
        "id": ids.moderation_id(),
        "model": model,
        "results": [_moderation_result(model, texts, images) for texts, images in inputs],
    }


_HANDLERS: dict[str, Callable[[dict[str, Any], int, GenerationBudget], dict[str, Any]]] = {
    "/v1/responses": _responses,
    "/v1/chat/completions": _chat,
    "/v1/embeddings": _embeddings,
    "/v1/completions": _completions,
    "/v1/moderations": _moderations,
}
