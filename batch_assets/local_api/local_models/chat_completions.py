"""The /v1/chat/completions endpoint."""

from typing import Any, NamedTuple

from batch_assets.local_api import ids
from batch_assets.local_api.json_schema_instance import GenerationBudget
from batch_assets.local_api.local_models.answer_text import (
    Shared,
    answer_seed,
    apply_stop,
    clip_to_budget,
    served_tier,
    stable_digest,
    system_fingerprint,
)
from batch_assets.local_api.local_models.parameters import (
    MAX_CHOICES,
    int_param,
    number_param,
    require_model,
)
from batch_assets.local_api.local_models.reasoning import is_reasoning_model, reasoning_tokens
from batch_assets.local_api.local_models.rejections import (
    RequestRejected,
    bad_value,
    missing_parameter,
    wrong_type,
)
from batch_assets.local_api.local_models.request_inputs import all_texts, last_user_text
from batch_assets.local_api.local_models.structured_output import (
    Generation,
    SchemaSite,
    cut_room,
    forced_function,
    function_arguments,
    mentions_json,
    render_answer,
    schema_format,
)
from batch_assets.local_api.local_models.token_counting import count_tokens, messages_tokens

_CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")


def _check_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the validated chat messages or refuse the body."""
    messages = body.get("messages")
    if messages is None:
        raise missing_parameter("messages")
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array", messages)
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
            raise wrong_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise missing_parameter(f"{where}.role")
        if role not in _CHAT_ROLES:
            raise bad_value(f"{where}.role", role, _CHAT_ROLES)
        content = message.get("content")
        if content is None and role != "assistant":
            raise missing_parameter(f"{where}.content")
        if content is not None and not isinstance(content, str | list):
            raise wrong_type(f"{where}.content", "one of a string or array of objects", content)
    return messages


class _ChatTemplate(NamedTuple):
    """What a chat body decides outside its messages: read once per template."""

    model: str
    n: int
    thinking: int
    visible_budget: int | None
    kind: str
    schema: dict[str, Any] | None
    site: SchemaSite
    truncate_after: int | None
    forced: Any
    stop: object
    response_format: object
    tools: object
    seed: object
    service_tier: str
    fingerprint: str


# Templates read before, by the kept rest of a body (see `check_templated_body_and_rest`).
_TEMPLATES: dict[int, tuple[dict[str, Any], _ChatTemplate]] = {}
_TEMPLATES_SIZE = 256


def _read_template(body: dict[str, Any], model: str) -> _ChatTemplate:
    """Check the parameters besides the model and the messages (in the API's order) and read
    what they decide."""
    n = int_param(body, "n", low=1, high=MAX_CHOICES) or 1
    max_tokens = int_param(body, "max_tokens", low=1)
    max_completion_tokens = int_param(body, "max_completion_tokens", low=1)
    number_param(body, "temperature", low=0, high=2)
    number_param(body, "top_p", low=0, high=1)
    reasoning = is_reasoning_model(model)
    if reasoning and max_tokens is not None:
        raise RequestRejected(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    kind, schema, format_echo = schema_format(
        body.get("response_format"), "response_format", "response_format", None
    )
    budget = max_completion_tokens if max_completion_tokens is not None else max_tokens
    thinking = reasoning_tokens(model, body.get("reasoning_effort"))
    if budget is not None:
        thinking = min(thinking, budget)
    visible_budget = None if budget is None else budget - thinking
    site = SchemaSite(
        f"response_format '{format_echo.get('name', '')}'",
        "response_format.json_schema.schema",
        None,
    )
    return _ChatTemplate(
        model,
        n,
        thinking,
        visible_budget,
        kind,
        schema,
        site,
        cut_room(visible_budget, body.get("stop")),
        forced_function(body, nested=True),
        body.get("stop"),
        body.get("response_format"),
        body.get("tools"),
        body.get("seed"),
        served_tier(body),
        system_fingerprint(model),
    )


def _known_template(rest: dict[str, Any] | None) -> _ChatTemplate | None:
    """The template read before for this kept rest of a body, if any."""
    if rest is None:
        return None
    known = _TEMPLATES.get(id(rest))
    return known[1] if known is not None and known[0] is rest else None


def _keep_template(rest: dict[str, Any], template: _ChatTemplate) -> None:
    """Keep a template read from a body whose rest is `rest` (kept alive here)."""
    if len(_TEMPLATES) >= _TEMPLATES_SIZE:
        _TEMPLATES.clear()
    _TEMPLATES[id(rest)] = (rest, template)


def answer_chat_completions(
    body: dict[str, Any],
    created: int,
    work: GenerationBudget,
    rest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Answer /v1/chat/completions with a chat.completion object.

    `rest` is the kept rest of the body (all but its messages; see check_templated_body),
    whose values the body's are: the template it decides is then read once, when it passes
    every check, and the checks of a request run in the same order either way.
    """
    template = _known_template(rest)
    if template is None:
        model = require_model(body)
        messages = _check_messages(body)
        template = _read_template(body, model)
        if rest is not None:
            _keep_template(rest, template)
    else:
        messages = _check_messages(body)
    if template.kind == "json_object" and not mentions_json(all_texts(messages)):
        raise RequestRejected(
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param="messages",
        )
    return _completion(template, messages, created, work)


def _completion(
    template: _ChatTemplate, messages: list[dict[str, Any]], created: int, work: GenerationBudget
) -> dict[str, Any]:
    """The chat.completion object for checked messages under a read template."""
    model, thinking, visible_budget = template.model, template.thinking, template.visible_budget
    # the answer depends on what the model reads, not on limits, so a cut answer is a prefix
    answer_key = stable_digest(
        model,
        messages,
        Shared(template.response_format),
        Shared(template.tools),
        template.seed,
    )
    forced = template.forced
    topic = last_user_text(messages)
    generation = Generation(work, template.truncate_after)
    choices = []
    completion_tokens = 0
    for index in range(template.n):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
        }
        if forced is not None:
            name = forced.definition["name"]
            arguments = function_arguments(forced, answer_seed(answer_key, index), work)
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
            answer = render_answer(
                template.kind,
                template.schema,
                topic,
                (answer_key, index),
                generation,
                template.site,
            )
            text = apply_stop(answer, template.stop)
            content, cut = clip_to_budget(text, visible_budget)
            message["content"] = content
            finish_reason = "length" if cut else "stop"
            completion_tokens += thinking + count_tokens(content)
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}
        )
    prompt_tokens = messages_tokens(messages)
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
                "reasoning_tokens": thinking * template.n,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": template.service_tier,
        "system_fingerprint": template.fingerprint,
    }
