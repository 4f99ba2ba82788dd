"""A real PostgreSQL for the deployment tests, one per session (S3: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """PostgreSQL 16 on 127.0.0.1; `.url` is `postgresql://dagster:...@127.0.0.1:PORT/dagster`,
    `.create_database(name)` makes a test its own database."""
    server = PostgresServer.start(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()
