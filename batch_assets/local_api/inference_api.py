"""The batch endpoints served synchronously, as any OpenAI-compatible server would."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from batch_assets.local_api.local_models import SUPPORTED_ENDPOINTS, RequestRejected, respond
from batch_assets.local_api.web import engine_of, json_body, json_response

router = APIRouter()


async def _answer(request: Request) -> Response:
    body = await json_body(request)
    if body.get("stream"):
        return json_response(
            RequestRejected(
                "Streaming is not supported by the local Batch API.", param="stream"
            ).envelope(),
            400,
        )
    try:
        answer = respond(request.url.path, body, created=int(engine_of(request).settings.now()))
    except RequestRejected as rejected:
        return json_response(rejected.envelope(), rejected.status_code)
    return json_response(answer)


for _endpoint in SUPPORTED_ENDPOINTS:
    router.add_api_route(_endpoint, _answer, methods=["POST"], name=_endpoint)
