"""Run a pipeline the way Dagster does: a real instance, real runs, real sensor ticks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from openai import OpenAI

from batch_assets.pipeline.keys import RUN_KEY_TAG
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sensor import batch_completion_sensor
from tests.local_api.helpers import chat_request, jsonl
from tests.local_api_server import LocalBatchAPI, wait_for

TEST_API_KEY = "sk-test-0123456789abcdef"


def resource_for(server: LocalBatchAPI | str, max_retries: int = 3) -> OpenAIBatchResource:
    """The resource pointed at a local Batch API, or at its base URL."""
    base_url = server if isinstance(server, str) else server.base_url
    return OpenAIBatchResource(api_key=TEST_API_KEY, base_url=base_url, max_retries=max_retries)


@dataclass
class Harness:
    """Definitions plus the instance they run in."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursor: str | None = None

    def materialize(
        self, keys: Sequence[str | dg.AssetKey], *, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        """Run the named assets (and their checks) in one run."""
        job = self.defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey.from_coercible(key) for key in keys],
            raise_on_error=raise_on_error,
        )

    def tick(self) -> dg.SensorResult:
        """One tick of batch_completion_sensor, carrying the cursor on."""
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=self.defs,
            resources=dict(self.defs.resources or {}),
        ) as context:
            result = batch_completion_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        for event in result.asset_events or []:
            self.instance.report_runless_asset_event(event)
        return result

    def tick_until_run_requested(self, timeout: float = 60.0) -> dg.RunRequest:
        """Tick until the sensor asks for a run; that run request."""
        requests: list[dg.RunRequest] = []

        def ticked() -> bool:
            requests.extend(self.tick().run_requests or [])
            return bool(requests)

        wait_for(ticked, timeout=timeout, interval=0.1)
        return requests[0]

    def run_requested(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Execute what a run request asks for, tagged with its run key as the daemon does."""
        assert request.asset_selection is not None
        job = self.defs.resolve_implicit_global_asset_job_def()
        tags = {**request.tags, RUN_KEY_TAG: request.run_key} if request.run_key else request.tags
        return job.execute_in_process(
            instance=self.instance,
            asset_selection=list(request.asset_selection),
            tags=tags,
            raise_on_error=False,
        )

    def run_until_downloaded(self, output_key: str, attempts: int = 5) -> dg.ExecuteInProcessResult:
        """Tick and run what the sensor asks for until a run materializes `output_key`."""
        for _ in range(attempts):
            result = self.run_requested(self.tick_until_run_requested())
            materialized = {
                event.asset_key.to_user_string()
                for event in result.get_asset_materialization_events()
            }
            if output_key in materialized or not result.success:
                return result
        raise AssertionError(f"{output_key} was not materialized within {attempts} runs")

    def submit_and_wait_for_progress(
        self, server: LocalBatchAPI, name: str, completed: int = 5
    ) -> tuple[str, OpenAI]:
        """Materialize a one-shard pipeline's requests and batch; wait until `completed` are done.

        Returns the batch id and an SDK client for the server.
        """
        self.materialize([f"{name}_requests", f"{name}_batch"])
        [batch_id] = self.latest_metadata(f"{name}_batch")["batch_ids"]
        client = OpenAI(base_url=server.base_url, api_key=TEST_API_KEY)
        wait_for(lambda: client.batches.retrieve(batch_id).request_counts.completed >= completed)
        return batch_id, client

    def latest_metadata(self, key: str) -> dict:
        """The metadata of an asset's latest materialization."""
        event = self.instance.get_latest_materialization_event(dg.AssetKey(key))
        assert event is not None and event.asset_materialization is not None, key
        return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def make_defs(
    pipeline: dg.Definitions,
    server: LocalBatchAPI | str,
    extra_assets: Sequence = (),
    *,
    max_retries: int = 3,
) -> dg.Definitions:
    """A pipeline's definitions with the sensor and the resource pointed at `server`."""
    return dg.Definitions.merge(
        pipeline,
        dg.Definitions(
            assets=list(extra_assets),
            sensors=[batch_completion_sensor],
            resources={"openai_batch": resource_for(server, max_retries)},
        ),
    )


def shared_instance(folder: Path) -> dg.DagsterInstance:
    """An instance kept in `folder`, which a child process can open too."""
    folder.mkdir(exist_ok=True)
    return dg.DagsterInstance.local_temp(str(folder))


def write_chat_requests(path: Path, custom_ids: Sequence[str]) -> Path:
    """A JSONL file of chat requests, one per custom_id, each asking its custom_id."""
    path.write_bytes(jsonl([chat_request(custom_id, custom_id) for custom_id in custom_ids]))
    return path


def storage(tmp_path: Path) -> Path:
    """A storage folder for generated files inside the test's temporary folder."""
    folder = tmp_path / "generated"
    folder.mkdir(exist_ok=True)
    return folder
