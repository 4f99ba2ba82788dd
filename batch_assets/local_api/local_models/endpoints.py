"""The endpoints a local model serves, and the answer to a request body on one of them."""

from collections.abc import Callable
from typing import Any

from batch_assets.local_api.json_schema_instance import DeadlinePassed, GenerationBudget
from batch_assets.local_api.json_values import describe
from batch_assets.local_api.local_models.body_walk import check_templated_body_and_rest
from batch_assets.local_api.local_models.chat_completions import answer_chat_completions
from batch_assets.local_api.local_models.completions import answer_completions
from batch_assets.local_api.local_models.embeddings import answer_embeddings
from batch_assets.local_api.local_models.moderations import answer_moderations
from batch_assets.local_api.local_models.parameters import reject_unknown_parameters
from batch_assets.local_api.local_models.rejections import AnswerTimedOut, RequestRejected
from batch_assets.local_api.local_models.responses import answer_responses

SUPPORTED_ENDPOINTS: tuple[str, ...] = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
)

# The part of a body each request of a batch has of its own (the rest comes from a template).
_OWN_PART = {
    "/v1/responses": "input",
    "/v1/chat/completions": "messages",
    "/v1/embeddings": "input",
    "/v1/completions": "prompt",
    "/v1/moderations": "input",
}

# A batch request's answer stops this long after it starts (its work budget ends it far sooner).
BATCH_ANSWER_SECONDS = 5.0


def respond(endpoint: str, body: dict, *, created: int, deadline: float | None = None) -> dict:
    """Answer one request body as the real endpoint would (200 body), or raise RequestRejected.

    Past `deadline` (a time.monotonic() value) building the answer stops with AnswerTimedOut.
    """
    handler = _HANDLERS.get(endpoint)
    if handler is None:
        raise RequestRejected(f"Invalid URL (POST {endpoint})", status_code=404)
    if not isinstance(body, dict):
        raise RequestRejected(
            f"Invalid type for body: expected an object, but got {describe(body)} instead.",
            code="invalid_type",
        )
    body, rest = check_templated_body_and_rest(body, _OWN_PART[endpoint])
    reject_unknown_parameters(endpoint, body)
    try:
        if handler is answer_chat_completions:
            return answer_chat_completions(body, created, GenerationBudget(deadline=deadline), rest)
        return handler(body, created, GenerationBudget(deadline=deadline))
    except DeadlinePassed:
        raise AnswerTimedOut from None


_HANDLERS: dict[str, Callable[[dict[str, Any], int, GenerationBudget], dict[str, Any]]] = {
    "/v1/responses": answer_responses,
    "/v1/chat/completions": answer_chat_completions,
    "/v1/embeddings": answer_embeddings,
    "/v1/completions": answer_completions,
    "/v1/moderations": answer_moderations,
}
