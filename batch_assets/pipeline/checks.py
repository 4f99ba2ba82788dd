"""Asset checks: every request answered exactly once, and an error rate under the threshold."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import dagster as dg
import polars as pl

from batch_assets.core.records import Submission
from batch_assets.core.request_plan import planned_ids
from batch_assets.core.requested_ids import requested_ids
from batch_assets.core.typed_answers import MATCHES_COLUMN
from batch_assets.pipeline.spec import PipelineSpec


def answer_counts(
    submission: Submission, answers: pl.LazyFrame, errors: pl.LazyFrame
) -> dict[str, int]:
    """How many requests came back never, once, and more than once across output and errors."""
    returned = pl.concat([answers.select("custom_id"), errors.select("custom_id")]).collect()
    requested = requested_ids(submission.batches).select("custom_id")
    plan = submission.plan
    if plan is not None and not plan.full_shards:  # the cache's answers and folded duplicates
        requested = pl.concat([requested, planned_ids(plan)])
    counts = requested.join(
        returned.group_by("custom_id").len(), on="custom_id", how="left"
    ).with_columns(pl.col("len").fill_null(0))
    extra = returned.join(counts.select("custom_id"), on="custom_id", how="anti").height
    return {
        "missing": counts.filter(pl.col("len") == 0).height,
        "duplicated": counts.filter(pl.col("len") > 1).height,
        "unexpected": extra,
        "requested": counts.height,
    }


def build_checks(spec: PipelineSpec) -> list[dg.AssetChecksDefinition]:
    """The pipeline's two checks."""

    @dg.asset_check(
        partitions_def=spec.partitions_def,
        asset=spec.output_key,
        name="every_request_answered_once",
        additional_ins={
            "errors": dg.AssetIn(spec.errors_key),
            "submission": dg.AssetIn(spec.batch_key),
        },
        description="Every custom_id of the requests appears exactly once in output or errors.",
    )
    def every_request_answered_once(
        answers: pl.LazyFrame, errors: pl.LazyFrame, submission: Submission
    ) -> dg.AssetCheckResult:
        counts = answer_counts(submission, answers, errors)
        return dg.AssetCheckResult(
            passed=counts["missing"] == counts["duplicated"] == counts["unexpected"] == 0,
            metadata={name: dg.MetadataValue.int(value) for name, value in counts.items()},
        )

    @dg.asset_check(
        partitions_def=spec.partitions_def,
        asset=spec.errors_key,
        name="error_rate_below_threshold",
        additional_ins={"answers": dg.AssetIn(spec.output_key)},
        description=f"At most {spec.max_error_rate:.1%} of requests end in the errors table.",
    )
    def error_rate_below_threshold(
        errors: pl.LazyFrame, answers: pl.LazyFrame
    ) -> dg.AssetCheckResult:
        failed = errors.select(pl.len()).collect().item()
        total = answers.select(pl.len()).collect().item() + failed
        rate = failed / total if total else 0.0
        return dg.AssetCheckResult(
            passed=rate <= spec.max_error_rate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "error_rate": dg.MetadataValue.float(round(rate, 6)),
                "threshold": dg.MetadataValue.float(spec.max_error_rate),
                "errors": dg.MetadataValue.int(failed),
                "total": dg.MetadataValue.int(total),
            },
        )

    return [every_request_answered_once, error_rate_below_threshold]


def build_schema_check(spec: PipelineSpec) -> dg.AssetChecksDefinition:
    """A check that every answer to a JSON-schema response_format fits the schema."""

    @dg.asset_check(
        partitions_def=spec.partitions_def,
        asset=spec.results_key,
        name="answers_match_schema",
        description="Every answered request's answer fits the response_format schema; one "
        "that does not keeps its raw text in `answer` and has nulls in the typed columns.",
    )
    def answers_match_schema(results: pl.LazyFrame) -> dg.AssetCheckResult:
        counts = results.select(
            pl.col(MATCHES_COLUMN).not_().sum().alias("mismatched"),
            pl.col(MATCHES_COLUMN).is_not_null().sum().alias("answered"),
        ).collect()
        mismatched_count, answered = counts.row(0)
        return dg.AssetCheckResult(
            passed=mismatched_count == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "mismatched": dg.MetadataValue.int(int(mismatched_count)),
                "answered": dg.MetadataValue.int(int(answered)),
            },
        )

    return answers_match_schema
