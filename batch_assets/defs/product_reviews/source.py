"""Product reviews shipped in `data/`, as a polars DataFrame."""

import dagster as dg
import polars as pl

from batch_assets.project import DATA_DIR

REVIEWS_CSV = DATA_DIR / "product_reviews.csv"


@dg.asset(
    group_name="product_reviews",
    kinds={"polars", "csv"},
    description="300 outdoor-gear product reviews from data/product_reviews.csv.",
)
def product_reviews() -> dg.Output[pl.DataFrame]:
    """The reviews, one row each."""
    frame = pl.read_csv(REVIEWS_CSV)
    return dg.Output(
        frame,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(frame.height),
            "path": dg.MetadataValue.path(str(REVIEWS_CSV)),
        },
    )


defs = dg.Definitions(assets=[product_reviews])
