"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase
from openai import OpenAI

from batch_assets.local_api.settings import Simulation
from tests.local_api_server import LocalBatchAPI
from tests.services.s3 import S3Server

# `make test` draws the same examples on every run, so CI passes or fails by the commit alone;
# `make fuzz` (HYPOTHESIS_PROFILE=fuzz) draws fresh ones, 25 times as many.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=2500,
    deadline=None,
    derandomize=False,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),  # failures replayed first
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Every simulation setting at its default, to put the shared server back after each test.
DEFAULT_SETTINGS = Simulation().model_dump()


@pytest.fixture(scope="session")
def shared_local_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBatchAPI]:
    """One local Batch API process for the whole session."""
    server = LocalBatchAPI(tmp_path_factory.mktemp("local-api") / "state").start()
    yield server
    server.stop()


@pytest.fixture
def local_api(shared_local_api: LocalBatchAPI) -> Iterator[LocalBatchAPI]:
    """The shared local Batch API, with its settings put back after the test."""
    yield shared_local_api
    shared_local_api.configure(**DEFAULT_SETTINGS)


@pytest.fixture
def client(local_api: LocalBatchAPI) -> OpenAI:
    """The openai SDK pointed at the shared local Batch API."""
    return local_api.client()


@pytest.fixture
def start_local_api(tmp_path: Path) -> Iterator[object]:
    """Start dedicated servers (own flags, own state); all stopped after the test."""
    started: list[LocalBatchAPI] = []

    def start(*flags: str, api_key: str | None = None, name: str = "state") -> LocalBatchAPI:
        server = LocalBatchAPI(tmp_path / name, tuple(flags), api_key).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server (moto's, over HTTP on loopback) for the whole session."""
    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, with its credentials and endpoint in this process's AWS environment."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata lookups
    return s3_server


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's TMPDIR: the run's scratch space, to check that nothing is left in it."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
