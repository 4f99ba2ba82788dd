"""`<name>_results`: the input rows joined with their answers by custom_id (`results_join`)."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import dagster as dg
import polars as pl

from batch_assets.core.output_parsing import ANSWERED_STATUS
from batch_assets.core.results_join import clash_message, clashing_columns, join_results
from batch_assets.core.typed_answers import MATCHES_COLUMN, typed_answers
from batch_assets.pipeline.sources import DataFrameSource
from batch_assets.pipeline.spec import PipelineSpec
from batch_assets.pipeline.table_metadata import frame_metadata


def results_metadata(joined: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    """Row counts for the UI: every row, the answered (HTTP 200) and the failed ones."""
    status = joined["status_code"]
    answered = int((status == ANSWERED_STATUS).sum())
    failed = int((status.is_not_null() & (status != ANSWERED_STATUS)).sum())
    failed += int((status.is_null() & joined["error_code"].is_not_null()).sum())
    return {
        **frame_metadata(joined),
        "answered_rows": dg.MetadataValue.int(answered),
        "error_rows": dg.MetadataValue.int(failed),
        "rows_without_result": dg.MetadataValue.int(joined.height - answered - failed),
    }


def build_results_asset(spec: PipelineSpec, source: DataFrameSource) -> dg.AssetsDefinition:
    """The DataFrame pipeline's final table."""
    id_column = source.template.custom_id_column

    @dg.asset(
        name=spec.results_key.path[-1],
        ins={
            "frame": dg.AssetIn(source.upstream_key),
            "answers": dg.AssetIn(spec.output_key),
            "errors": dg.AssetIn(spec.errors_key),
        },
        group_name=spec.group_name,
        io_manager_key=spec.io_manager_key,
        kinds=spec.kinds("polars", "parquet"),
        tags=spec.tags(spec.download_role),
        owners=spec.owners,
        pool=spec.pool,
        partitions_def=spec.partitions_def,
        description=f"The rows of {source.upstream_key.to_user_string()} joined with their "
        f"answers and errors by '{id_column}' = custom_id; answers to a JSON-schema "
        f"response_format decoded into a typed column per property (and `{MATCHES_COLUMN}`).",
    )
    def results(
        context: dg.AssetExecutionContext,
        frame: pl.DataFrame,
        answers: pl.DataFrame,
        errors: pl.DataFrame,
    ) -> dg.Output[pl.DataFrame]:
        clash = clashing_columns(frame.columns, source.template)
        if clash:
            raise dg.Failure(
                description=f"Cannot join the results: {clash_message(clash)}. The answers "
                f"are kept in {spec.output_key.to_user_string()} and "
                f"{spec.errors_key.to_user_string()}.",
                metadata={"columns": dg.MetadataValue.json(clash)},
                allow_retries=False,
            )
        returned = pl.concat([answers, errors])
        if source.template.response_format is not None:
            returned = typed_answers(returned, source.template.response_format)
        joined = join_results(frame, id_column, returned)
        return dg.Output(joined, metadata=results_metadata(joined))

    return results
