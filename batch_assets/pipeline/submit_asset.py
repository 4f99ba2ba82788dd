"""`<name>_batch`: upload each shard and create its batch, then return at once."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import time
from collections import Counter
from collections.abc import Sequence

import dagster as dg

from batch_assets.core.batch_client import BatchClient
from batch_assets.core.records import Submission, SubmittedBatch
from batch_assets.core.request_plan import RequestPlan
from batch_assets.pipeline.budget import judge, refuse_over_budget
from batch_assets.pipeline.keys import submission_run_key
from batch_assets.pipeline.ledger import AttemptRecord, CancelRequest, Ledger
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.spec import PipelineSpec
from batch_assets.pipeline.submission import partition_salt, submit_shards


def cancel_superseded(
    context: dg.AssetExecutionContext,
    client: BatchClient,
    ledger: Ledger,
    previous: AttemptRecord,
    current: Sequence[SubmittedBatch],
) -> tuple[SubmittedBatch, ...]:
    """Cancel the running batches of the attempt this submission replaces (those it does not
    reuse), and record the cancel in the ledger; the batches cancelled. An attempt of the same
    submission (a follow-up of the batches this one reuses) is not replaced: it is kept."""
    if current and previous.submission_key == submission_run_key([b.batch_id for b in current]):
        return ()
    kept = {batch.batch_id for batch in current}
    cancelled, _ = client.cancel_running(
        {batch.batch_id for batch in previous.batches if batch.batch_id not in kept}
    )
    if cancelled:
        ledger.record_cancel(CancelRequest(tuple(cancelled), context.run.run_id))
        context.log.info(
            f"Cancelled {len(cancelled)} batch(es) of the submission this one replaces: "
            f"{cancelled}; their finished answers go into the request cache."
        )
    return tuple(batch for batch in previous.batches if batch.batch_id in set(cancelled))


def build_submit_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """The asset whose materialization means "submitted": the sensor waits for the batches."""

    @dg.asset(
        name=spec.batch_key.path[-1],
        ins={"plan": dg.AssetIn(spec.requests_key)},
        group_name=spec.group_name,
        io_manager_key=spec.records_io_manager_key,
        kinds=spec.kinds("openai"),
        tags=spec.tags(spec.submission_role),
        owners=spec.owners,
        pool=spec.pool,
        automation_condition=spec.automation_condition,
        partitions_def=spec.partitions_def,
        required_resource_keys={spec.resource_key},
        description=f"Uploads each request shard and creates its batch on {spec.endpoint} "
        f"(completion window {spec.completion_window}); returns once submitted. "
        "A shard already submitted (same content, endpoint and pipeline) is not submitted again; "
        "a forecast over max_cost_usd is refused unless the run approves it. "
        "Each materialization records one attempt in the pipeline's ledger.",
    )
    def batch_asset(context: dg.AssetExecutionContext, plan: RequestPlan) -> dg.Output[Submission]:
        resource: OpenAIBatchResource = getattr(context.resources, spec.resource_key)
        client = resource.client
        partition = context.partition_key if context.has_partition_key else None
        verdict = judge(plan, spec, context.run.tags)
        refuse_over_budget(verdict)
        ledger = Ledger(context.instance, spec.batch_key)
        previous = ledger.latest_attempt(partition)
        shards = plan.shards
        salt = partition_salt(partition)
        if spec.cache_mode == "refresh" and plan.plan_url:  # new answers: no earlier run's batch
            salt += f"refresh {plan.plan_url}\n"  # (the same plan, re-executed, reuses its own)
        max_age = spec.cache_max_age if spec.cache_mode == "reuse" else None
        made = submit_shards(
            client,
            spec,
            shards,
            key_salt=salt,
            completed_after=None if max_age is None else time.time() - max_age.total_seconds(),
            log=context.log.info,
        )
        if not shards:
            context.log.info(
                f"Every request is answered by the cache: nothing uploaded, no batch created; "
                f"{spec.output_key.to_user_string()} is materialized from the cache."
            )
        superseded: tuple[SubmittedBatch, ...] = ()
        if spec.on_superseded == "cancel" and previous is not None:
            superseded = cancel_superseded(context, client, ledger, previous, made.batches)
        submission = Submission(
            pipeline=spec.name,
            endpoint=spec.endpoint,
            host=resource.host,
            batches=made.batches,
            plan=plan,
            superseded=superseded,
        )
        attempt = AttemptRecord(
            number=1,
            batches=made.batches,
            reused_batches=len(made.reused_batches),
            reused_uploads=len(made.reused_uploads),
            partition=partition,
        )
        statuses = Counter(
            made.reused_batches[index].status if index in made.reused_batches else "validating"
            for index in range(len(shards))
        )
        return dg.Output(
            submission,
            metadata={
                **attempt.to_metadata(),
                "input_file_ids": dg.MetadataValue.json(
                    [batch.input_file_id for batch in submission.batches]
                ),
                "batch_count": dg.MetadataValue.int(len(submission.batches)),
                "status": dg.MetadataValue.text(
                    ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
                ),
                "backend": dg.MetadataValue.text(resource.host),
                "endpoint": dg.MetadataValue.text(spec.endpoint),
                **(verdict.metadata() if verdict.over_limit else {}),
            },
        )

    return batch_asset
