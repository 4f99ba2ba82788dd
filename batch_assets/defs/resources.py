"""The Batch API resource every pipeline uses, configured from the environment."""

import os

import dagster as dg

from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.spec import resolve_storage


def batch_api_resource(environ: dict[str, str]) -> OpenAIBatchResource:
    """Azure OpenAI when AZURE_OPENAI_ENDPOINT is set, else OpenAI or OPENAI_BASE_URL.

    A variable set to an empty string counts as unset, as deployments pass optional ones empty.
    """
    setting = {name: value for name, value in environ.items() if value}
    if setting.get("AZURE_OPENAI_ENDPOINT"):
        return OpenAIBatchResource(
            api_key=dg.EnvVar("AZURE_OPENAI_API_KEY"),
            azure_endpoint=setting["AZURE_OPENAI_ENDPOINT"],
            api_version=setting.get("OPENAI_API_VERSION", "2025-04-01-preview"),
        )
    return OpenAIBatchResource(
        api_key=dg.EnvVar("OPENAI_API_KEY"),
        base_url=setting.get("OPENAI_BASE_URL"),
        organization=setting.get("OPENAI_ORG_ID"),
        project=setting.get("OPENAI_PROJECT_ID"),
    )


# Assets with no IO manager of their own (the examples' upstream tables) are pickled on the
# pipelines' storage too, by Dagster's UPath IO manager: a run in another container reads them.
defs = dg.Definitions(
    resources={
        "openai_batch": batch_api_resource(dict(os.environ)),
        "io_manager": dg.FilesystemIOManager(base_dir=str(resolve_storage(None)[0] / "io_manager")),
    }
)
