"""The Batch API resource every pipeline uses, configured from the environment."""

import os

import dagster as dg

from batch_assets.pipeline.resource import OpenAIBatchResource


def batch_api_resource(environ: dict[str, str]) -> OpenAIBatchResource:
    """Azure OpenAI when AZURE_OPENAI_ENDPOINT is set, else OpenAI or OPENAI_BASE_URL."""
    if environ.get("AZURE_OPENAI_ENDPOINT"):
        return OpenAIBatchResource(
            api_key=dg.EnvVar("AZURE_OPENAI_API_KEY"),
            azure_endpoint=environ["AZURE_OPENAI_ENDPOINT"],
            api_version=environ.get("OPENAI_API_VERSION", "2025-04-01-preview"),
        )
    return OpenAIBatchResource(
        api_key=dg.EnvVar("OPENAI_API_KEY"),
        base_url=environ.get("OPENAI_BASE_URL"),
        organization=environ.get("OPENAI_ORG_ID"),
        project=environ.get("OPENAI_PROJECT_ID"),
    )


defs = dg.Definitions(resources={"openai_batch": batch_api_resource(dict(os.environ))})
