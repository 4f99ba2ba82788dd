"""batch-assets: the OpenAI Batch API as Dagster assets.

`BatchPipelineComponent` is exported lazily, for `dg` (`[tool.dg.project] registry_modules`)
and for `type: batch_assets.BatchPipelineComponent` in a defs.yaml: importing `batch_assets.core`
or `batch_assets.local_api` must not import Dagster.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batch_assets.components.batch_pipeline import BatchPipelineComponent

__all__ = ["BatchPipelineComponent"]


def __getattr__(name: str) -> Any:
    if name == "BatchPipelineComponent":
        from batch_assets.components.batch_pipeline import BatchPipelineComponent

        return BatchPipelineComponent
    raise AttributeError(f"module 'batch_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), *__all__]
