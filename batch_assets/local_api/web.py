"""Small helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, Response

from batch_assets.local_api.engine import BatchEngine
from batch_assets.local_api.errors import APIError, shown

BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you "
    "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
)


def json_response(body: Any, status_code: int = 200) -> Response:
    """A JSON response, serialized once with the standard library."""
    return Response(
        json.dumps(body, ensure_ascii=False), status_code=status_code, media_type="application/json"
    )


def engine_of(request: Request) -> BatchEngine:
    """The batch engine of the app that got this request."""
    return request.app.state.engine


def _refuse_constant(name: str) -> float:
    """`parse_constant` for `json.loads`: JSON has no NaN or Infinity, and OpenAI refuses them."""
    raise ValueError(f"'{name}' is not a JSON value")


def _parse_json(raw: bytes) -> Any:
    """A JSON body parsed as OpenAI's parser would; a 400 in its words when it is not JSON."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise APIError(400, f"{BAD_JSON_MESSAGE} Its JSON is nested too deeply.") from None
    except ValueError as exc:
        raise APIError(400, BAD_JSON_MESSAGE) from exc


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 in OpenAI's words."""
    body = _parse_json(await request.body())
    if not isinstance(body, dict):
        raise APIError(400, "The JSON body of your request must be an object.")
    return body


def int_param(value: str | None, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """A whole-number query parameter within bounds, or a 400 naming it."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise APIError(
            400, f"Invalid '{name}': expected an integer, got '{shown(value)}'.", param=name
        ) from None
    if not minimum <= number <= maximum:
        raise APIError(
            400,
            f"Invalid '{name}': {number} is out of range; expected {minimum} to {maximum}.",
            param=name,
            code="invalid_value",
        )
    return number


def list_envelope(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's list object around one page."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
