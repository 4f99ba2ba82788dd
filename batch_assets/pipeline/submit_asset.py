"""`<name>_batch`: upload each shard and create its batch, then return at once."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

from collections import Counter

import dagster as dg

from batch_assets.core.records import Submission
from batch_assets.core.sharding import Shard
from batch_assets.pipeline.ledger import AttemptRecord
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.spec import PipelineSpec
from batch_assets.pipeline.submission import partition_salt, submit_shards


def build_submit_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """The asset whose materialization means "submitted": the sensor waits for the batches."""

    @dg.asset(
        name=spec.batch_key.path[-1],
        ins={"shards": dg.AssetIn(spec.requests_key)},
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
        "A shard already submitted (same content, endpoint and pipeline) is not submitted again. "
        "Each materialization records one attempt in the pipeline's ledger.",
    )
    def batch_asset(
        context: dg.AssetExecutionContext, shards: list[Shard]
    ) -> dg.Output[Submission]:
        resource: OpenAIBatchResource = getattr(context.resources, spec.resource_key)
        client = resource.client
        partition = context.partition_key if context.has_partition_key else None
        made = submit_shards(
            client, spec, shards, key_salt=partition_salt(partition), log=context.log.info
        )
        submission = Submission(
            pipeline=spec.name,
            endpoint=spec.endpoint,
            host=resource.host,
            batches=made.batches,
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
            },
        )

    return batch_asset
