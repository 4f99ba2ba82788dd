"""The pipeline with its storage on a real S3 server: every file a later run reads is in the
bucket, a run's local disk is scratch, and bad settings fail before anything is uploaded."""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from openai import OpenAI

from batch_assets.core.request_template import RequestTemplate
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import DataFrameSource, JsonlFileSource
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import (
    TEST_API_KEY,
    Harness,
    calls,
    make_defs,
    write_chat_requests,
)
from tests.services.s3 import S3Server

ROWS = 40
ALL_KEYS = ["rows", "labels_requests", "labels_batch", "labels_output", "labels_errors"]
ALL_KEYS.append("labels_results")
# Fresh in every run: the batch's id, and the ids of each request line and answer.
FRESH_PER_RUN = ["batch_id", "batch_request_id", "request_id"]


@dg.asset
def rows() -> pl.DataFrame:
    """Upstream rows."""
    return pl.DataFrame({"row_id": range(ROWS), "text": [f"row {i} \u2603" for i in range(ROWS)]})


def _pipeline(storage_dir: str | Path) -> dg.Definitions:
    template = RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        user_template="{text}",
        custom_id_column="row_id",
    )
    return build_batch_pipeline(
        "labels", DataFrameSource(upstream="rows", template=template), storage_dir=storage_dir
    )


def _segments(s3: S3Server, prefix: str) -> list[str]:
    """The request cache's segments under `prefix` (one folder per backend host)."""
    keys = s3.object_keys(f"{prefix}/request_cache/labels/")
    return [key for key in keys if "/segments/" in key]


def _empty(folder: Path) -> None:
    """A new run's local disk: nothing an earlier run wrote."""
    shutil.rmtree(folder)
    folder.mkdir()


def _instance(tmp_path: Path) -> ContextManager[dg.DagsterInstance]:
    """The instance stands for Postgres: it lives outside every run's scratch."""
    folder = tmp_path / "instance"
    folder.mkdir(exist_ok=True)
    return dg.instance_for_test(temp_dir=str(folder))


def _materialize_all_then_download(
    api: LocalBatchAPI, storage_dir: str, scratch: Path, instance: dg.DagsterInstance
) -> tuple[Harness, dg.ExecuteInProcessResult]:
    """Materialize all with the batch held, then the sensor's run, each on an empty scratch.

    The upstream rows are pickled on the same storage by Dagster's own UPath IO manager.
    """
    api.configure(pause_publishing_at="before_output")
    defs = dg.Definitions.merge(
        make_defs(_pipeline(storage_dir), api, [rows]),
        dg.Definitions(
            resources={"io_manager": dg.FilesystemIOManager(base_dir=f"{storage_dir}/upstream")}
        ),
    )
    harness = Harness(defs, instance)
    assert harness.materialize(ALL_KEYS).success
    _empty(scratch)
    api.configure(pause_publishing_at=None)
    result = harness.run_until_downloaded("labels_output")
    assert result.success
    return harness, result


def test_every_file_is_in_the_bucket_and_results_equal_those_on_local_disk(
    api: LocalBatchAPI, s3: S3Server, scratch: Path, tmp_path: Path, start_local_api
) -> None:
    with _instance(tmp_path) as instance:
        s3_harness, on_s3 = _materialize_all_then_download(
            api, s3.url("deployed"), scratch, instance
        )
        output = s3_harness.latest_metadata("labels_output")
    keys = s3.object_keys("deployed/labels/")
    runs = {key.split("/")[2] for key in keys} - {"downloads", "tables", "records"}
    [segment] = _segments(s3, "deployed")  # the answers, cached
    assert s3.object_keys("deployed/upstream/") == ["deployed/upstream/rows"]
    assert len(runs) == 1  # the submission run's shards; the download run writes none of its own
    [batch_id] = output["batch_ids"]
    expected = {
        f"deployed/labels/downloads/{batch_id}_output.jsonl",
        "deployed/labels/tables/labels_output.parquet",
        "deployed/labels/tables/labels_errors.parquet",
        "deployed/labels/tables/labels_results.parquet",
        "deployed/labels/records/labels_requests",
        "deployed/labels/records/labels_batch",
    }
    assert expected <= set(keys)
    assert sum(key.endswith("/requests/shard-00000.jsonl") for key in keys) == 1
    # Parquet only for the tables and the request plan (the cache's answers and the folding)
    assert {key.rsplit("/", 1)[1] for key in keys if key.endswith(".parquet")} == {
        "labels_output.parquet",
        "labels_errors.parquet",
        "labels_results.parquet",
        "plan.parquet",
        "cached.parquet",
    }
    assert segment.endswith(".parquet")
    assert not (tmp_path / "generated").exists()
    assert list(scratch.iterdir()) == []
    assert all(url.startswith(f"s3://{s3.bucket}/deployed/") for url in output["output_files"])
    assert output["path"] == f"s3://{s3.bucket}/deployed/labels/tables/labels_output.parquet"

    with _instance(tmp_path) as instance:
        local = str(tmp_path / "generated")
        fresh = start_local_api(name="local-run-api")  # a batch of its own, not api's reused
        _, on_disk = _materialize_all_then_download(fresh, local, scratch, instance)
    results_s3 = on_s3.output_for_node("labels_results").drop(FRESH_PER_RUN)
    results_disk = on_disk.output_for_node("labels_results").drop(FRESH_PER_RUN)
    assert results_s3.height == ROWS and (results_s3["status_code"] == 200).all()
    assert results_s3.equals(results_disk)


def test_the_request_cache_lives_in_the_bucket_and_answers_a_rerun_on_another_machine(
    api: LocalBatchAPI, s3: S3Server, scratch: Path, tmp_path: Path
) -> None:
    # A prefix of its own: the module's other tests answer the same rows under deployed/.
    with _instance(tmp_path) as instance:
        _materialize_all_then_download(api, s3.url("again"), scratch, instance)
    uploads = calls(api, "POST /v1/files")
    [segment] = _segments(s3, "again")
    _empty(scratch)  # another machine: no local disk in common, a restarted instance
    (tmp_path / "restarted").mkdir()

    with _instance(tmp_path / "restarted") as instance:
        defs = dg.Definitions.merge(
            make_defs(_pipeline(s3.url("again")), api, [rows]),
            dg.Definitions(
                resources={"io_manager": dg.FilesystemIOManager(base_dir=s3.url("again/upstream"))}
            ),
        )
        harness = Harness(defs, instance)
        rerun = harness.materialize(ALL_KEYS)

        assert rerun.success
        assert calls(api, "POST /v1/files") == uploads  # nothing uploaded, nothing paid for
        results = rerun.output_for_node("labels_results")
        assert results.height == ROWS and results["cached"].all()
        assert harness.latest_metadata("labels_requests")["cache_hits"] == ROWS
    assert _segments(s3, "again") == [segment]
    assert list(scratch.iterdir()) == []


def test_a_download_cut_mid_stream_resumes_into_the_bucket(
    api: LocalBatchAPI, s3: S3Server, scratch: Path, tmp_path: Path
) -> None:
    api.configure(cut_downloads_after_bytes=2000)
    with _instance(tmp_path) as instance:
        harness, _ = _materialize_all_then_download(api, s3.url("cut"), scratch, instance)
        output = harness.latest_metadata("labels_output")
    [output_url] = output["output_files"]
    key = output_url.removeprefix(f"s3://{s3.bucket}/")
    client = OpenAI(base_url=api.base_url, api_key=TEST_API_KEY)
    [batch_id] = output["batch_ids"]
    file_id = client.batches.retrieve(batch_id).output_file_id
    assert file_id is not None
    assert s3.read(key) == client.files.content(file_id).read()
    assert len(s3.read(key)) > 2 * 2000
    assert list(scratch.iterdir()) == []


def test_a_missing_bucket_fails_before_anything_is_uploaded(
    api: LocalBatchAPI, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_chat_requests(tmp_path / "requests.jsonl", ["a", "b"])
    monkeypatch.setenv("BATCH_ASSETS_STORAGE_DIR", "s3://no-such-bucket/prefix")
    pipeline = build_batch_pipeline("nobucket", JsonlFileSource(source))
    harness = Harness(make_defs(pipeline, api), dg.DagsterInstance.ephemeral())

    failed = harness.materialize(["nobucket_requests", "nobucket_batch"], raise_on_error=False)

    assert not failed.success
    [failure] = [event for event in failed.all_events if event.is_step_failure]
    assert failure.step_failure_data.user_failure_data is not None
    message = failure.step_failure_data.user_failure_data.description or ""
    assert message.startswith("Nothing uploaded: ")
    assert "BATCH_ASSETS_STORAGE_DIR=s3://no-such-bucket/prefix: " in message
    assert "'no-such-bucket' does not exist" in message
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in message
    client = OpenAI(base_url=api.base_url, api_key=TEST_API_KEY)
    assert client.files.list().data == []
