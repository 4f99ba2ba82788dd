"""The /v1/responses endpoint."""

from typing import Any

from batch_assets.local_api import ids
from batch_assets.local_api.json_schema_instance import GenerationBudget
from batch_assets.local_api.local_models.answer_text import (
    Shared,
    answer_seed,
    clip_to_budget,
    served_tier,
    stable_digest,
)
from batch_assets.local_api.local_models.parameters import int_param, number_param, require_model
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
from batch_assets.local_api.local_models.token_counting import count_tokens, responses_input_tokens

RESPONSES_MIN_OUTPUT_TOKENS = 16


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


def _check_responses_input(body: dict[str, Any]) -> list[Any]:
    """Return the input as a list of items (a str becomes one user message) or refuse it."""
    value = body.get("input")
    if value is None:
        if any(body.get(k) is not None for k in ("prompt", "previous_response_id", "conversation")):
            return []
        raise missing_parameter("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise wrong_type("input", "one of a string or array of input items", value)
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise wrong_type(f"input[{index}]", "an object", item)
        role = item.get("role")
        if role is not None and role not in ("user", "assistant", "system", "developer"):
            raise bad_value(
                f"input[{index}].role", role, ("user", "assistant", "system", "developer")
            )
    return value


def answer_responses(body: dict[str, Any], created: int, work: GenerationBudget) -> dict[str, Any]:
    """Answer /v1/responses with a response object."""
    model = require_model(body)
    items = _check_responses_input(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str | list):
        raise wrong_type("instructions", "a string", instructions)
    max_output_tokens = int_param(body, "max_output_tokens", low=RESPONSES_MIN_OUTPUT_TOKENS)
    temperature = number_param(body, "temperature", low=0, high=2)
    top_p = number_param(body, "top_p", low=0, high=1)
    text_options = body.get("text")
    if text_options is not None and not isinstance(text_options, dict):
        raise wrong_type("text", "an object", text_options)
    text_options = text_options or {}
    kind, schema, format_echo = schema_format(
        text_options.get("format"), "text.format", "text.format.schema", "invalid_json_schema"
    )
    texts = all_texts(items) + ([instructions] if isinstance(instructions, str) else [])
    if kind == "json_object" and not mentions_json(texts):
        raise RequestRejected(
            "Response input messages must contain the word 'json' in some form to use "
            "'text.format' of type 'json_object'.",
            param="input",
        )
    reasoning_options = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    effort = reasoning_options.get("effort")
    thinking = reasoning_tokens(model, effort)
    if max_output_tokens is not None:
        thinking = min(thinking, max_output_tokens)
    visible_budget = None if max_output_tokens is None else max_output_tokens - thinking
    answer_key = stable_digest(
        model, items, instructions, Shared(text_options), Shared(body.get("tools"))
    )
    forced = forced_function(body, nested=False)
    if forced is not None:
        name = forced.definition["name"]
        arguments = function_arguments(forced, answer_seed(answer_key, 0), work)
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
        site = SchemaSite(
            f"response_format '{format_echo.get('name', '')}'",
            "text.format.schema",
            "invalid_json_schema",
        )
        generation = Generation(work, cut_room(visible_budget, None))
        answer = render_answer(
            kind, schema, last_user_text(items), (answer_key, 0), generation, site
        )
        text, cut = clip_to_budget(answer, visible_budget)
        item = {
            "type": "message",
            "id": ids.response_item_id("msg"),
            "status": "incomplete" if cut else "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
        output_tokens = thinking + count_tokens(text)
    input_tokens = responses_input_tokens(body)
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
            if is_reasoning_model(model)
            else None,
            "summary": reasoning_options.get("summary"),
        },
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": served_tier(body),
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
