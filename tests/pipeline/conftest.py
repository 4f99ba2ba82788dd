"""Each pipeline test gets its own local Batch API, so no batch is shared between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_api_server import LocalBatchAPI


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalBatchAPI]:
    """A fresh local Batch API for this test."""
    server = LocalBatchAPI(tmp_path / "api-state").start()
    yield server
    server.stop()
