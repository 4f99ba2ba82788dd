"""The Batch API's endpoints and per-batch limits."""

from __future__ import annotations

from dataclasses import dataclass

CHAT_COMPLETIONS = "/v1/chat/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
COMPLETIONS = "/v1/completions"
MODERATIONS = "/v1/moderations"

ENDPOINTS: tuple[str, ...] = (RESPONSES, CHAT_COMPLETIONS, EMBEDDINGS, COMPLETIONS, MODERATIONS)
MODEL_OPTIONAL_ENDPOINTS: frozenset[str] = frozenset({MODERATIONS})


@dataclass(frozen=True)
class BatchLimits:
    """How much one batch (one shard) may hold; the defaults are the Batch API's."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    max_embedding_inputs: int = 50_000

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_bytes", "max_embedding_inputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BatchLimits.{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = BatchLimits()


def check_endpoint(endpoint: str) -> str:
    """Return `endpoint` if the Batch API accepts it; else raise ValueError listing those."""
    if endpoint not in ENDPOINTS:
        raise ValueError(
            f"endpoint {endpoint!r} is not a Batch API endpoint; use one of: {', '.join(ENDPOINTS)}"
        )
    return endpoint
