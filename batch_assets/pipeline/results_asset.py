"""`<name>_results`: the input rows joined with their answers by custom_id."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import dagster as dg
import polars as pl

from batch_assets.core.output_parsing import decode_json_answers
from batch_assets.core.records import BatchResult
from batch_assets.pipeline.sources import DataFrameSource
from batch_assets.pipeline.spec import PipelineSpec


def join_results(frame: pl.DataFrame, id_column: str, returned: pl.DataFrame) -> pl.DataFrame:
    """Every input row once, with its answer or its error; joined by custom_id, never position."""
    return (
        frame.with_columns(pl.col(id_column).cast(pl.String).alias("__custom_id"))
        .join(returned, left_on="__custom_id", right_on="custom_id", how="left", suffix="_batch")
        .drop("__custom_id")
    )


def build_results_asset(spec: PipelineSpec, source: DataFrameSource) -> dg.AssetsDefinition:
    """The DataFrame pipeline's final table."""
    id_column = source.template.custom_id_column

    @dg.asset(
        name=spec.results_key.path[-1],
        ins={"frame": dg.AssetIn(source.upstream_key), "result": dg.AssetIn(spec.output_key)},
        group_name=spec.group_name,
        io_manager_key=spec.io_manager_key,
        kinds={"polars", "parquet"},
        tags=spec.tags(spec.download_role),
        description=f"The rows of {source.upstream_key.to_user_string()} joined with their "
        f"answers and errors by '{id_column}' = custom_id; JSON-schema answers decoded into "
        "`answer_json`.",
    )
    def results(
        context: dg.AssetExecutionContext, frame: pl.DataFrame, result: BatchResult
    ) -> dg.Output[pl.DataFrame]:
        returned = pl.concat(
            [pl.read_parquet(result.output_table), pl.read_parquet(result.errors_table)]
        )
        if source.template.response_format is not None:
            returned = decode_json_answers(returned, schema=source.template.response_format)
        joined = join_results(frame, id_column, returned)
        answered = joined.filter(pl.col("answer").is_not_null()).height
        return dg.Output(
            joined,
            metadata={
                "row_count": dg.MetadataValue.int(joined.height),
                "answered_rows": dg.MetadataValue.int(answered),
            },
        )

    return results
