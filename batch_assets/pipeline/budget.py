"""The budget guard: a submission whose forecast exceeds `max_cost_usd` is refused before
anything is uploaded, unless the run carries an approval (the APPROVE_COST_TAG run tag)."""

# Dagster reads `context: dg.AssetCheckExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from batch_assets.core.cost_estimate import ModelEstimate, largest_contributors, total_cost
from batch_assets.core.request_plan import RequestPlan
from batch_assets.pipeline.keys import (
    APPROVE_COST_TAG,
    BUDGET_KEY,
    COST_APPROVED_KEY,
    COST_ESTIMATE_KEY,
)
from batch_assets.pipeline.spec import PipelineSpec


@dataclass(frozen=True)
class BudgetVerdict:
    """A plan's forecast against the pipeline's budget and the run's approval."""

    estimate: float
    unknown: tuple[str, ...]  # models whose cost has no bound: no price, or no output limit
    limit: float | None
    approved: float | None  # the dollars the run's approval tag allows, if it carries one
    contributors: str

    @property
    def over_limit(self) -> bool:
        """Whether the forecast exceeds the budget (or cannot be priced under one)."""
        return self.limit is not None and (self.estimate > self.limit or bool(self.unknown))

    @property
    def passed(self) -> bool:
        """Under the budget, or approved up to at least the forecast."""
        if not self.over_limit:
            return True
        return self.approved is not None and self.estimate <= self.approved

    def describe(self) -> str:
        """The verdict in a sentence: estimate, limit and the largest contributors."""
        unknown = ", ".join(self.unknown)
        unbounded = f" plus what cannot be bounded ({unknown})" if unknown else ""
        limit = "no limit" if self.limit is None else _dollars(self.limit)
        text = f"estimated {_dollars(self.estimate)}{unbounded} against max_cost_usd {limit}"
        if self.approved is not None:
            text += f", approved up to {_dollars(self.approved)} by the run tag {APPROVE_COST_TAG}"
        return f"{text}; largest: {self.contributors}"

    def metadata(self) -> dict[str, dg.MetadataValue]:
        """The figures, for the check and the submission."""
        values: dict[str, dg.MetadataValue] = {
            COST_ESTIMATE_KEY: dg.MetadataValue.float(round(self.estimate, 6)),
            "largest_contributors": dg.MetadataValue.text(self.contributors),
        }
        if self.limit is not None:
            values[BUDGET_KEY] = dg.MetadataValue.float(self.limit)
        if self.approved is not None:
            values[COST_APPROVED_KEY] = dg.MetadataValue.float(self.approved)
        return values


def _dollars(value: float) -> str:
    """Dollars as people write them: $0.000001, $12.5, $1,200."""
    return "$" + f"{value:,.6f}".rstrip("0").rstrip(".")


def _unknown(item: ModelEstimate) -> str | None:
    """Why a model's cost has no bound, if it has none."""
    if item.cost_usd is None:
        return f"{item.model}: no price"
    if not item.output_bounded:
        return f"{item.model}: requests without max_tokens"
    return None


def approval(tags: Mapping[str, str]) -> float | None:
    """The dollars a run's approval tag allows, or None; a tag that is not a number fails."""
    value = tags.get(APPROVE_COST_TAG)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise dg.Failure(
            description=f"The run tag {APPROVE_COST_TAG}={value!r} must be a number of US "
            "dollars, the most this run may cost.",
            allow_retries=False,
        ) from None


def judge(plan: RequestPlan, spec: PipelineSpec, tags: Mapping[str, str]) -> BudgetVerdict:
    """The plan's forecast against the budget."""
    contributors = ", ".join(
        f"{item.model} ({item.requests:,} requests, "
        + ("no price" if item.cost_usd is None else _dollars(item.cost_usd))
        + ")"
        for item in largest_contributors(plan.estimates)
    )
    return BudgetVerdict(
        estimate=total_cost(plan.estimates) or 0.0,
        unknown=tuple(reason for item in plan.estimates if (reason := _unknown(item))),
        limit=spec.max_cost_usd,
        approved=approval(tags),
        contributors=contributors or "nothing to submit",
    )


def refuse_over_budget(verdict: BudgetVerdict) -> None:
    """Fail before anything is uploaded when the forecast exceeds the budget unapproved."""
    if not verdict.passed:
        raise dg.Failure(
            description=f"Over budget, nothing uploaded: {verdict.describe()}. To submit it "
            f"anyway, launch the run with the tag {APPROVE_COST_TAG}=<dollars> (Launchpad: "
            "Edit tags).",
            metadata=verdict.metadata(),
            allow_retries=False,
        )


def build_budget_check(spec: PipelineSpec) -> dg.AssetChecksDefinition:
    """A blocking check on `<name>_requests`: its forecast within `max_cost_usd`."""

    @dg.asset_check(
        asset=spec.requests_key,
        name="cost_within_budget",
        blocking=True,
        partitions_def=spec.partitions_def,
        description=f"The forecast at batch prices is at most ${spec.max_cost_usd} "
        f"(max_cost_usd), or the run approves more with the tag {APPROVE_COST_TAG}; "
        "blocking: over it, nothing is submitted.",
    )
    def cost_within_budget(
        context: dg.AssetCheckExecutionContext, plan: RequestPlan
    ) -> dg.AssetCheckResult:
        verdict = judge(plan, spec, context.run.tags)
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=verdict.describe(),
            metadata=verdict.metadata(),
        )

    return cost_within_budget
