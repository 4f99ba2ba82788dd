"""`<name>_cancel_job`: cancel the still-running batches of a pipeline's latest submission (of
the run's partition, in a partitioned pipeline)."""

import dagster as dg

from batch_assets.pipeline.ledger import CancelRequest, Ledger
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.spec import PipelineSpec


def build_cancel_job(spec: PipelineSpec) -> dg.JobDefinition:
    """A job that cancels what is still running; the sensor then downloads what finished."""

    @dg.op(
        name=f"{spec.name}_cancel_batches",
        required_resource_keys={spec.resource_key},
        description=f"Cancel the running batches of {spec.batch_key.to_user_string()}.",
    )
    def cancel_batches(context: dg.OpExecutionContext) -> None:
        resource: OpenAIBatchResource = getattr(context.resources, spec.resource_key)
        client = resource.client
        ledger = Ledger(context.instance, spec.batch_key)
        latest = ledger.latest_attempt(context.partition_key if context.has_partition_key else None)
        batch_ids = latest.batch_ids if latest is not None else []
        if not batch_ids:
            context.log.info(f"{spec.batch_key.to_user_string()} has no submission to cancel.")
            return
        cancelled, finished = client.cancel_running(set(batch_ids))
        context.log.info(
            f"Cancelling {len(cancelled)} batch(es) {cancelled}; {len(finished)} had "
            "already ended. batch_completion_sensor keeps what they finished."
        )
        ledger.record_cancel(CancelRequest(tuple(cancelled), context.run.run_id))

    @dg.job(
        name=f"{spec.name}_cancel_job",
        description=f"Cancel {spec.name}'s batches still running; finished results are kept.",
        tags=spec.tags(),
        partitions_def=spec.partitions_def,
    )
    def cancel_job() -> None:
        cancel_batches()

    return cancel_job
