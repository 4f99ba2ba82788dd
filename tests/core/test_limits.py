"""Tests for the batch limits and endpoints."""

from __future__ import annotations

import pytest

from batch_assets.core.limits import ENDPOINTS, BatchLimits, check_endpoint


def test_defaults_are_the_batch_api_limits() -> None:
    limits = BatchLimits()
    assert (limits.max_requests, limits.max_bytes, limits.max_embedding_inputs) == (
        50_000,
        200 * 1024 * 1024,
        50_000,
    )


def test_limits_can_be_lowered_and_are_frozen() -> None:
    limits = BatchLimits(max_requests=3, max_bytes=1000, max_embedding_inputs=7)
    assert limits.max_requests == 3
    with pytest.raises(AttributeError):
        limits.max_requests = 4  # type: ignore[misc]


@pytest.mark.parametrize("value", [0, -1, 1.5, True, None])
def test_limits_must_be_positive_integers(value: object) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BatchLimits(max_bytes=value)  # type: ignore[arg-type]


def test_endpoints() -> None:
    assert set(ENDPOINTS) == {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
    }
    assert check_endpoint("/v1/embeddings") == "/v1/embeddings"
    with pytest.raises(ValueError, match="/v1/chat/completions"):
        check_endpoint("/v1/images/generations")
