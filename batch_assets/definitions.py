"""The code location: everything under `batch_assets/defs/`."""

from pathlib import Path

import dagster as dg

from batch_assets.components.batch_pipeline import with_completion_sensors


@dg.definitions
def defs() -> dg.Definitions:
    """Load every definition in the defs folder, and the completion sensor of each Batch API
    resource its pipelines use (YAML pipelines return none: see `with_completion_sensors`)."""
    return with_completion_sensors(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    )
