"""Run a pipeline the way Dagster does: a real instance, real runs, real sensor ticks."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from openai import OpenAI

from batch_assets.core.limits import DEFAULT_LIMITS, BatchLimits
from batch_assets.core.records import SubmittedBatch
from batch_assets.core.storage import read_parquet
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.keys import RUN_KEY_TAG
from batch_assets.pipeline.ledger import AttemptRecord
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sensor import batch_completion_sensor
from batch_assets.pipeline.sources import BatchSource, IteratorSource, JsonlFileSource
from tests.local_api.helpers import chat_request, jsonl
from tests.local_api_server import LocalBatchAPI, wait_for

TEST_API_KEY = "sk-test-0123456789abcdef"
REQUESTS_FILE = "requests.jsonl"
STORAGE_FOLDER = "gen"
FROZEN_SECONDS_PER_REQUEST = 3600.0
"""A pace at which a batch answers nothing more while a test looks at it."""


def resource_for(server: LocalBatchAPI | str, max_retries: int = 3) -> OpenAIBatchResource:
    """The resource pointed at a local Batch API, or at its base URL."""
    base_url = server if isinstance(server, str) else server.base_url
    return OpenAIBatchResource(api_key=TEST_API_KEY, base_url=base_url, max_retries=max_retries)


@dataclass
class Harness:
    """Definitions plus the instance they run in."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)  # by sensor name

    @property
    def cursor(self) -> str | None:
        """The cursor of batch_completion_sensor."""
        return self.cursors.get(batch_completion_sensor.name)

    def materialize(
        self,
        keys: Sequence[str | dg.AssetKey],
        *,
        raise_on_error: bool = True,
        partition: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Run the named assets (and their checks) in one run, of `partition` if given."""
        job = self.defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey.from_coercible(key) for key in keys],
            raise_on_error=raise_on_error,
            partition_key=partition,
            tags=tags,
        )

    def submit(self, name: str) -> dg.ExecuteInProcessResult:
        """Materialize pipeline `name`'s requests and the batches that carry them."""
        return self.materialize([f"{name}_requests", f"{name}_batch"])

    def download(self) -> dg.ExecuteInProcessResult:
        """Tick until the sensor asks for the download run, and run it."""
        return self.run_requested(self.tick_until_run_requested())

    def submit_and_download(self, name: str) -> dg.ExecuteInProcessResult:
        """Submit pipeline `name`, then run the download the sensor asks for when it ends."""
        self.submit(name)
        return self.download()

    def tick(self, sensor: dg.SensorDefinition = batch_completion_sensor) -> dg.SensorResult:
        """One tick of `sensor` (batch_completion_sensor by default), carrying its cursor on."""
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(sensor.name),
            definitions=self.defs,
            resources=dict(self.defs.resources or {}),
        ) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursors[sensor.name] = result.cursor
        for event in result.asset_events or []:
            self.instance.report_runless_asset_event(event)
        return result

    def tick_until_run_requested_all(self, timeout: float = 60.0) -> list[dg.RunRequest]:
        """Tick until the sensor asks for runs; every run request of that tick."""
        requests: list[dg.RunRequest] = []

        def ticked() -> bool:
            requests.extend(self.tick().run_requests or [])
            return bool(requests)

        wait_for(ticked, timeout=timeout, interval=0.1)
        return requests

    def tick_until_run_requested(self, timeout: float = 60.0) -> dg.RunRequest:
        """Tick until the sensor asks for a run; the first run request of that tick."""
        return self.tick_until_run_requested_all(timeout)[0]

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
            partition_key=request.partition_key,
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

    def submit_held(self, server: LocalBatchAPI, name: str, answered: int) -> tuple[str, OpenAI]:
        """Submit a one-shard pipeline with the server answering `answered` requests of each
        batch, then holding it `in_progress` (`answer_at_most`); wait until it holds.

        Returns the batch id and an SDK client for the server.
        """
        server.configure(answer_at_most=answered)
        self.submit(name)
        [batch_id] = self.latest_metadata(f"{name}_batch")["batch_ids"]
        client = OpenAI(base_url=server.base_url, api_key=TEST_API_KEY)
        wait_for(lambda: client.batches.retrieve(batch_id).request_counts.completed == answered)
        return batch_id, client

    def wait_for_batches(
        self, server: LocalBatchAPI, name: str, status: str, count: int = 1
    ) -> list[str]:
        """The latest submission's batch ids, once `count` of its batches have `status`."""
        batch_ids = self.latest_metadata(f"{name}_batch")["batch_ids"]
        client = server.client()

        def reached() -> bool:
            statuses = [client.batches.retrieve(batch_id).status for batch_id in batch_ids]
            return statuses.count(status) >= count

        wait_for(reached)
        return batch_ids

    def latest_metadata(self, key: str) -> dict:
        """The metadata of an asset's latest materialization."""
        event = self.instance.get_latest_materialization_event(dg.AssetKey(key))
        assert event is not None and event.asset_materialization is not None, key
        return {name: value.value for name, value in event.asset_materialization.metadata.items()}

    def latest_frames(self, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Pipeline `name`'s output and errors as their latest materializations stored them."""
        return (
            read_parquet(self.latest_metadata(f"{name}_output")["path"]),
            read_parquet(self.latest_metadata(f"{name}_errors")["path"]),
        )


def uploaded_custom_ids(server: LocalBatchAPI) -> list[list[str]]:
    """The custom_ids of every batch input file uploaded to the server, a list per file,
    oldest first: what was (or would be) paid for."""
    client = OpenAI(base_url=server.base_url, api_key=TEST_API_KEY)
    files = sorted(client.files.list(purpose="batch"), key=lambda file: (file.created_at, file.id))
    return [
        [json.loads(line)["custom_id"] for line in client.files.content(file.id).text.splitlines()]
        for file in files
    ]


def calls(server: LocalBatchAPI, route: str) -> int:
    """How many calls the local Batch API has answered on `route` ("POST /v1/batches")."""
    return int(server.admin("GET", "stats")["calls"].get(route, 0))


def result_frames(
    result: dg.ExecuteInProcessResult, name: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The output and errors frames that pipeline `name`'s download run produced."""
    return (
        result.output_for_node(f"{name}_download", f"{name}_output"),
        result.output_for_node(f"{name}_download", f"{name}_errors"),
    )


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


def write_chat_requests(
    path: Path, custom_ids: Sequence[str], broken: Collection[str] = frozenset()
) -> Path:
    """A JSONL file of chat requests, one per custom_id, each asking its custom_id; those in
    `broken` have no messages, which the API answers with a 400."""
    requests = [chat_request(custom_id, custom_id) for custom_id in custom_ids]
    for request in requests:
        if request["custom_id"] in broken:
            request["body"]["messages"] = []
    path.write_bytes(jsonl(requests))
    return path


def storage(tmp_path: Path) -> Path:
    """A storage folder for generated files inside the test's temporary folder."""
    folder = tmp_path / "generated"
    folder.mkdir(exist_ok=True)
    return folder


def build_harness(
    server: LocalBatchAPI | str,
    tmp_path: Path,
    instance: dg.DagsterInstance | None = None,
    *,
    name: str,
    custom_ids: Sequence[str] | None = None,
    broken: Collection[str] = frozenset(),
    source: BatchSource | Callable[[], Iterable[Mapping[str, Any]]] | None = None,
    endpoint: str | None = None,
    max_attempts: int = 3,
    shard_size: int | None = None,
    limits: BatchLimits = DEFAULT_LIMITS,
    max_retries: int = 3,
    extra_assets: Sequence[dg.AssetsDefinition] = (),
    asset_job: str | None = None,
    **options: Any,
) -> Harness:
    """Pipeline `name` on the local Batch API `server` (or its base URL), its files under
    `tmp_path / "gen"`, with the sensor and the resource (the SDK retrying `max_retries` times).

    The requests come from `source`: a source object as it is; a function, as an IteratorSource;
    by default the JSONL file `tmp_path / "requests.jsonl"`, first written (unless it exists)
    with a chat request per `custom_ids`, each asking its custom_id, those in `broken` with no
    messages (which the API answers with a 400). `shard_size` caps the requests of a batch, on
    top of `limits`. `extra_assets` go in beside the pipeline (its DataFrame's upstream), and
    `asset_job` names a job of every asset, to re-execute. Without `instance`, the instance is
    kept in `tmp_path / "dagster"`, where a child process can open it too. `options` go to
    `build_batch_pipeline` as they are (`cache=`, `max_cost_usd=`, ...).
    """
    if source is None:
        path = tmp_path / REQUESTS_FILE
        if custom_ids is not None and not path.exists():
            write_chat_requests(path, custom_ids, broken)
        source = JsonlFileSource(path)
    elif callable(source):
        source = IteratorSource(source)
    pipeline = build_batch_pipeline(
        name,
        source,
        endpoint=endpoint,
        storage_dir=tmp_path / STORAGE_FOLDER,
        max_attempts=max_attempts,
        limits=limits if shard_size is None else replace(limits, max_requests=shard_size),
        **options,
    )
    defs = make_defs(pipeline, server, extra_assets, max_retries=max_retries)
    if asset_job is not None:
        defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job(asset_job)]))
    if instance is None:
        instance = shared_instance(tmp_path / "dagster")
    return Harness(defs, instance)


def submitted(*batch_ids: str) -> tuple[SubmittedBatch, ...]:
    """Batches as the submission step records them, three requests each."""
    return tuple(
        SubmittedBatch(
            batch_id, f"file-{batch_id}", f"key-{batch_id}", f"file:///{batch_id}", 3, None
        )
        for batch_id in batch_ids
    )


def record_attempt(
    instance: dg.DagsterInstance, batch_key: dg.AssetKey | str, attempt: AttemptRecord
) -> None:
    """Record an attempt in a pipeline's ledger, as the submission and download steps do."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            dg.AssetKey.from_coercible(batch_key), metadata=attempt.to_metadata()
        )
    )
