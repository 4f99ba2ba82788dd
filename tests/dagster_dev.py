"""The environment of a `dagster dev` (or `make run`'s launcher) that a test starts for itself."""

from __future__ import annotations

import os
from pathlib import Path

from tests.local_api_server import LocalBatchAPI


def dev_environment(tmp_path: Path, api: LocalBatchAPI) -> dict[str, str]:
    """Everything in `tmp_path` (its own DAGSTER_HOME and storage), the Batch API at `api`, and
    a sensor that looks every second."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OPENAI_API_KEY": "sk-dev-test",
        "OPENAI_BASE_URL": api.base_url,
        "BATCH_ASSETS_STORAGE_DIR": str(tmp_path / "generated"),
        "BATCH_ASSETS_SENSOR_INTERVAL_SECONDS": "1",
    }
