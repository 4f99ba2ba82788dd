"""The Batch API's endpoints and per-batch limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeVar

CHAT_COMPLETIONS: Final = "/v1/chat/completions"
RESPONSES: Final = "/v1/responses"
EMBEDDINGS: Final = "/v1/embeddings"
COMPLETIONS: Final = "/v1/completions"
MODERATIONS: Final = "/v1/moderations"

# The endpoints a batch can run, as `check_endpoint` returns them and `BatchClient.create` takes
# them (the SDK's `batches.create` names these among its own literals).
BatchEndpoint = Literal[
    "/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations"
]
# The time frames the Batch API processes a batch within.
CompletionWindow = Literal["24h"]
COMPLETION_WINDOWS: tuple[CompletionWindow, ...] = ("24h",)

ENDPOINTS: tuple[BatchEndpoint, ...] = (
    RESPONSES,
    CHAT_COMPLETIONS,
    EMBEDDINGS,
    COMPLETIONS,
    MODERATIONS,
)
_Known = TypeVar("_Known", bound=str)
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


def _one_of(value: str, known: tuple[_Known, ...], setting: str) -> _Known:
    """`value` as one of `known`; else a ValueError naming the setting and what it takes."""
    for option in known:
        if value == option:
            return option
    raise ValueError(
        f"{setting} {value!r} is not one the Batch API takes; use one of: {', '.join(known)}"
    )


def check_endpoint(endpoint: str) -> BatchEndpoint:
    """Return `endpoint` if the Batch API accepts it; else raise ValueError listing those."""
    return _one_of(endpoint, ENDPOINTS, "endpoint")


def check_completion_window(window: str) -> CompletionWindow:
    """Return `window` if the Batch API accepts it; else raise ValueError naming those."""
    return _one_of(window, COMPLETION_WINDOWS, "completion_window")
