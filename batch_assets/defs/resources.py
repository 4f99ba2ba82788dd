"""The Batch API resource every pipeline uses, configured from the environment."""

import os

import dagster as dg

from batch_assets.pipeline.resource import OpenAIBatchResource

defs = dg.Definitions(
    resources={
        "openai_batch": OpenAIBatchResource(
            api_key=dg.EnvVar("OPENAI_API_KEY"),
            base_url=os.environ.get("OPENAI_BASE_URL"),
            organization=os.environ.get("OPENAI_ORG_ID"),
            project=os.environ.get("OPENAI_PROJECT_ID"),
        )
    }
)
