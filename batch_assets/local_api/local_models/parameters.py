"""Top-level request parameters: the names each endpoint knows, the model and bounded numbers."""

from typing import Any

from batch_assets.local_api.json_values import is_int, is_number
from batch_assets.local_api.local_models.rejections import (
    RequestRejected,
    missing_parameter,
    wrong_type,
)

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
MAX_CHOICES = 128


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


def model_of(endpoint: str, body: dict) -> str | None:
    """Return the request's model (moderations default to omni-moderation-latest)."""
    model = body.get("model") if isinstance(body, dict) else None
    if isinstance(model, str):
        return model
    if endpoint == "/v1/moderations":
        return DEFAULT_MODERATION_MODEL
    return None


def reject_unknown_parameters(endpoint: str, body: dict[str, Any]) -> None:
    """Refuse top-level keys the endpoint does not know, with the endpoint's own wording."""
    unknown = [key for key in body if key not in KNOWN_PARAMETERS[endpoint]]
    if not unknown:
        return
    if endpoint == "/v1/responses":
        raise RequestRejected(
            f"Unknown parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter"
        )
    raise RequestRejected(f"Unrecognized request argument supplied: {', '.join(unknown)}")


def require_model(body: dict[str, Any]) -> str:
    """Return body["model"] or refuse the body."""
    model = body.get("model")
    if model is None:
        raise missing_parameter("model")
    if not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    if not model:
        raise RequestRejected(
            "Invalid 'model': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="model",
            code="empty_string",
        )
    return model


def int_param(body: dict[str, Any], key: str, *, low: int, high: int | None = None) -> int | None:
    """Return an optional integer parameter, refusing wrong types and out-of-range values."""
    value = body.get(key)
    if value is None:
        return None
    if not is_int(value):
        raise wrong_type(key, "an integer", value)
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


def number_param(body: dict[str, Any], key: str, *, low: float, high: float) -> float | None:
    """Return an optional number parameter, refusing wrong types and out-of-range values."""
    value = body.get(key)
    if value is None:
        return None
    if not is_number(value):
        raise wrong_type(key, "a decimal", value)
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
