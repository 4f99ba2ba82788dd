"""The cost estimate at batch prices."""

from __future__ import annotations

import pytest

from batch_assets.core.costs import ModelPrice, estimate_cost_usd, price_for


def test_batch_discount_halves_the_list_price() -> None:
    prices = {"m": ModelPrice(input_per_million=2.0, output_per_million=8.0)}
    assert estimate_cost_usd("m", 1_000_000, 500_000, prices) == pytest.approx(3.0)
    assert estimate_cost_usd("m", 1_000_000, 500_000, prices, discount=0.0) == pytest.approx(6.0)


def test_dated_snapshots_match_their_model_by_the_longest_prefix() -> None:
    prices = {"gpt-4o": ModelPrice(2.5, 10), "gpt-4o-mini": ModelPrice(0.15, 0.6)}
    assert price_for("gpt-4o-mini-2024-07-18", prices) == prices["gpt-4o-mini"]
    assert price_for("gpt-4o-2024-08-06", prices) == prices["gpt-4o"]
    assert price_for("gpt-4", prices) is None


def test_unknown_model_has_no_estimate() -> None:
    assert estimate_cost_usd("no-such-model", 10, 10) is None
