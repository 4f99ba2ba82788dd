"""Deterministic stand-ins for OpenAI models: answer batch request bodies in the real shape."""

from batch_assets.local_api.local_models.body_walk import MAX_BODY_DEPTH, holds_lone_surrogate
from batch_assets.local_api.local_models.embeddings import count_embedding_inputs
from batch_assets.local_api.local_models.endpoints import (
    BATCH_ANSWER_SECONDS,
    SUPPORTED_ENDPOINTS,
    respond,
)
from batch_assets.local_api.local_models.parameters import model_of
from batch_assets.local_api.local_models.rejections import AnswerTimedOut, RequestRejected
from batch_assets.local_api.local_models.token_counting import count_tokens, estimate_input_tokens

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
