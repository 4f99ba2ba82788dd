"""The results join: every input row once, with its answer or its error, by custom_id.

Input columns named like a result column (`answer`, `model`, `status_code`, ...) are refused, when
the requests are built and again at the join, rather than renamed: the results table keeps one
schema, `answer` is always the batch's answer, and no renaming rule can collide in its turn.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from batch_assets.core.output_parsing import RESULT_SCHEMA
from batch_assets.core.request_template import RequestTemplate
from batch_assets.core.retry_policy import ATTEMPTS_COLUMN
from batch_assets.core.typed_answers import MATCHES_COLUMN, typed_columns

JOIN_KEY = "__custom_id"


def result_columns(template: RequestTemplate) -> list[str]:
    """The columns the results join adds to the input rows."""
    columns = [name for name in RESULT_SCHEMA if name != "custom_id"] + [ATTEMPTS_COLUMN]
    if template.response_format is not None:
        columns += [*typed_columns(template.response_format), MATCHES_COLUMN]
    return columns


def check_typed_columns(template: RequestTemplate) -> None:
    """Raise unless the schema's answers can have a column per property beside the results'."""
    if template.response_format is None:
        return
    reserved = {name for name in RESULT_SCHEMA} | {ATTEMPTS_COLUMN, MATCHES_COLUMN}
    clash = [name for name in typed_columns(template.response_format) if name in reserved]
    if clash:
        raise ValueError(
            f"the response_format's properties {', '.join(map(repr, clash))} are named like "
            "columns the results already have; rename them in the schema (say "
            f"{clash[0]!r} to '{clash[0]}_value')"
        )


def clashing_columns(columns: Sequence[str], template: RequestTemplate) -> list[str]:
    """The input columns named like a column the results join adds."""
    added = set(result_columns(template))
    return [name for name in columns if name in added]


def clash_message(clash: Sequence[str]) -> str:
    """What to tell the user about input columns named like result columns."""
    names = ", ".join(map(repr, clash))
    return (
        f"the input DataFrame has column(s) {names}, which the results join adds from the "
        f"batch's answers; rename them upstream (say {clash[0]!r} to '{clash[0]}_input')"
    )


def join_results(frame: pl.DataFrame, id_column: str, returned: pl.DataFrame) -> pl.DataFrame:
    """Every input row once, with its answer or its error; joined by custom_id, never position.

    The caller makes sure no input column is named like a result column (`clashing_columns`).
    """
    key = JOIN_KEY
    while key in frame.columns:  # never overwrite an input column
        key = f"_{key}"
    return (
        frame.with_columns(pl.col(id_column).cast(pl.String).alias(key))
        .join(
            returned.rename({"custom_id": key}),
            on=key,
            how="left",
            maintain_order="left",
        )
        .drop(key)
    )
