"""`<name>_results`: the input rows joined with their answers by custom_id."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import dagster as dg
import polars as pl

from batch_assets.core.atomic import write_parquet
from batch_assets.core.records import BatchResult
from batch_assets.pipeline.sources import DataFrameSource
from batch_assets.pipeline.spec import PipelineSpec

ANSWER_COLUMNS = ("answer", "finish_reason", "status_code", "batch_id")
ERROR_COLUMNS = ("error_code", "error_message")


def join_results(
    frame: pl.DataFrame, id_column: str, output: pl.DataFrame, errors: pl.DataFrame
) -> pl.DataFrame:
    """Every input row once, with its answer or its error; never joined by position."""
    key = pl.col(id_column).cast(pl.String)
    answers = output.select("custom_id", *[c for c in output.columns if c != "custom_id"])
    failures = errors.select("custom_id", *ERROR_COLUMNS)
    return (
        frame.with_columns(key.alias("__custom_id"))
        .join(answers, left_on="__custom_id", right_on="custom_id", how="left", suffix="_output")
        .join(failures, left_on="__custom_id", right_on="custom_id", how="left", suffix="_error")
        .drop("__custom_id")
    )


def build_results_asset(spec: PipelineSpec, source: DataFrameSource) -> dg.AssetsDefinition:
    """The DataFrame pipeline's final table."""
    id_column = source.template.custom_id_column

    @dg.asset(
        name=spec.results_key.path[-1],
        ins={"frame": dg.AssetIn(source.upstream_key), "result": dg.AssetIn(spec.output_key)},
        group_name=spec.group_name,
        kinds={"polars", "parquet"},
        tags=spec.tags(spec.download_role),
        description=f"The rows of {source.upstream_key.to_user_string()} joined with their "
        f"answers and errors by '{id_column}' = custom_id.",
    )
    def results(
        context: dg.AssetExecutionContext, frame: pl.DataFrame, result: BatchResult
    ) -> dg.Output[pl.DataFrame]:
        joined = join_results(
            frame,
            id_column,
            pl.read_parquet(result.output_table),
            pl.read_parquet(result.errors_table),
        )
        path = write_parquet(joined, result.output_table.parent / "results.parquet")
        answered = joined.filter(pl.col("answer").is_not_null()).height
        return dg.Output(
            joined,
            metadata={
                "row_count": dg.MetadataValue.int(joined.height),
                "answered_rows": dg.MetadataValue.int(answered),
                "results_table": dg.MetadataValue.path(str(path)),
            },
        )

    return results
