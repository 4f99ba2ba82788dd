"""Each pipeline test gets its own local Batch API, so no batch is shared between tests, and
its own Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.local_api_server import LocalBatchAPI


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalBatchAPI]:
    """A fresh local Batch API for this test."""
    server = LocalBatchAPI(tmp_path / "api-state").start()
    yield server
    server.stop()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A fresh Dagster instance for this test."""
    with dg.instance_for_test() as instance:
        yield instance
