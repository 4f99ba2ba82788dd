"""Token prices and the cost estimate of a batch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens at the normal (not batch) rate."""

    input_per_million: float
    output_per_million: float = 0.0


# Public list prices per million tokens; override them with the factory's `prices` argument.
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(0.15, 0.60),
    "gpt-4o": ModelPrice(2.50, 10.00),
    "gpt-4.1": ModelPrice(2.00, 8.00),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40),
    "gpt-3.5-turbo": ModelPrice(0.50, 1.50),
    "gpt-3.5-turbo-instruct": ModelPrice(1.50, 2.00),
    "text-embedding-3-small": ModelPrice(0.02),
    "text-embedding-3-large": ModelPrice(0.13),
    "text-embedding-ada-002": ModelPrice(0.10),
    "omni-moderation-latest": ModelPrice(0.0),
}


def estimate_cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, ModelPrice] = DEFAULT_PRICES,
    discount: float = BATCH_DISCOUNT,
) -> float | None:
    """What the tokens cost at batch rates, or None when the model has no price."""
    price = price_for(model, prices)
    if price is None:
        return None
    undiscounted = (
        input_tokens * price.input_per_million + output_tokens * price.output_per_million
    ) / 1_000_000
    return round(undiscounted * (1 - discount), 6)


def price_for(model: str, prices: Mapping[str, ModelPrice] = DEFAULT_PRICES) -> ModelPrice | None:
    """The price of a model, matching dated snapshots like `gpt-4o-mini-2024-07-18` by prefix."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(f"{name}-")]
    return prices[max(matches, key=len)] if matches else None
