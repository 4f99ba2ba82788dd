"""The product reviews of one month at a time: a partitioned polars DataFrame."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import dagster as dg
import polars as pl

from batch_assets.defs.product_reviews.source import REVIEWS_CSV

MONTHS = dg.MonthlyPartitionsDefinition(start_date="2026-01-01", end_date="2026-11-01")


@dg.asset(
    group_name="monthly_reviews",
    kinds={"polars", "csv"},
    partitions_def=MONTHS,
    description="The reviews of data/product_reviews.csv written in one month.",
)
def monthly_reviews(context: dg.AssetExecutionContext) -> dg.Output[pl.DataFrame]:
    """The month's reviews, one row each."""
    month = context.partition_key[:7]  # "2026-03-01" -> "2026-03"
    frame = pl.read_csv(REVIEWS_CSV).filter(pl.col("review_date").str.starts_with(month))
    return dg.Output(frame, metadata={"dagster/row_count": dg.MetadataValue.int(frame.height)})


defs = dg.Definitions(assets=[monthly_reviews])
