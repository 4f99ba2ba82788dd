"""`dagster dev` headless on the local Batch API: a launched run, then the daemon's sensor."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster_graphql import DagsterGraphQLClient

from batch_assets.project import PROJECT_ROOT
from tests.dagster_dev import dev_environment
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.services import free_port

LATEST_MATERIALIZATION = """
query Latest($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries { label } } }
  }
}
"""


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[tuple[DagsterGraphQLClient, LocalBatchAPI]]:
    """`dagster dev` with a temporary DAGSTER_HOME, pointed at a fresh local Batch API."""
    api = LocalBatchAPI(tmp_path / "api-state").start()
    port = free_port()
    env = dev_environment(tmp_path, api)
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent))
    assert dagster is not None
    log = (tmp_path / "dagster-dev.log").open("w")
    process = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return True
        except OSError:
            return process.poll() is not None and pytest.fail(
                (tmp_path / "dagster-dev.log").read_text()
            )

    try:
        wait_for(ready, timeout=120, interval=0.5)
        yield DagsterGraphQLClient("127.0.0.1", port_number=port), api
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        api.stop()


def test_launched_run_then_the_daemon_sensor_materializes_the_output(dagster_dev) -> None:
    client, api = dagster_dev
    run_id = client.submit_job_execution(
        "__ASSET_JOB",
        repository_location_name="batch_assets",
        repository_name="__repository__",
        asset_selection=["catalog_embeddings_requests", "catalog_embeddings_batch"],
    )
    wait_for(lambda: client.get_run_status(run_id).value == "SUCCESS", timeout=180, interval=1)

    def output_materialized() -> dict | None:
        data = client._execute(
            LATEST_MATERIALIZATION, {"key": {"path": ["catalog_embeddings_output"]}}
        )
        found = data["assetOrError"]["assetMaterializations"]
        return found[0] if found else None

    latest = wait_for(output_materialized, timeout=180, interval=1)
    assert latest["runId"] != run_id
    labels = {entry["label"] for entry in latest["metadataEntries"]}
    assert {"dagster/row_count", "openai.total_tokens", "backend", "output_files", "path"} <= labels
    assert api.admin("GET", "stats")["calls"]["POST /v1/batches"] == 1
