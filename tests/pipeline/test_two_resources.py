"""Two pipelines on two Batch API resources, each watched through its own resource."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sensor import completion_sensor
from batch_assets.pipeline.sources import JsonlFileSource
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import Harness, calls, resource_for, write_chat_requests

IDS = ["r1", "r2", "r3"]
LIST_BATCHES = "GET /v1/batches"


def test_each_pipeline_is_watched_and_downloaded_through_its_own_resource(
    api: LocalBatchAPI, start_local_api, tmp_path: Path
) -> None:
    other = start_local_api(name="other-api")
    storage = tmp_path / "generated"
    defs = dg.Definitions.merge(
        build_batch_pipeline(
            "alpha",
            JsonlFileSource(write_chat_requests(tmp_path / "alpha.jsonl", IDS)),
            storage_dir=storage,
        ),
        build_batch_pipeline(
            "beta",
            JsonlFileSource(write_chat_requests(tmp_path / "beta.jsonl", IDS)),
            storage_dir=storage,
            resource_key="other_batch",
        ),
        dg.Definitions(
            resources={"openai_batch": resource_for(api), "other_batch": resource_for(other)}
        ),
    )
    sensors = {sensor.name for sensor in defs.get_repository_def().sensor_defs}
    assert sensors == {"batch_completion_sensor", "batch_completion_sensor_other_batch"}
    with dg.instance_for_test() as instance:
        harness = Harness(defs, instance)
        harness.submit("alpha")
        harness.submit("beta")
        [alpha_batch] = harness.latest_metadata("alpha_batch")["batch_ids"]
        [beta_batch] = harness.latest_metadata("beta_batch")["batch_ids"]
        assert [batch.id for batch in api.client().batches.list()] == [alpha_batch]
        assert [batch.id for batch in other.client().batches.list()] == [beta_batch]
        for server, batch_id in ((api, alpha_batch), (other, beta_batch)):
            batches = server.client().batches
            wait_for(lambda b=batches, i=batch_id: b.retrieve(i).status == "completed")

        before = calls(api, LIST_BATCHES), calls(other, LIST_BATCHES)
        on_other = harness.tick(completion_sensor("other_batch"))
        assert (calls(api, LIST_BATCHES), calls(other, LIST_BATCHES)) == (before[0], before[1] + 1)
        on_default = harness.tick(completion_sensor("openai_batch"))
        assert calls(api, LIST_BATCHES) == before[0] + 1

        [beta_run] = on_other.run_requests or []
        [alpha_run] = on_default.run_requests or []
        assert set(beta_run.asset_selection or []) == {
            dg.AssetKey("beta_output"),
            dg.AssetKey("beta_errors"),
        }
        assert set(alpha_run.asset_selection or []) == {
            dg.AssetKey("alpha_output"),
            dg.AssetKey("alpha_errors"),
        }
        for request in (alpha_run, beta_run):
            assert harness.run_requested(request).success
        assert harness.latest_metadata("alpha_output")["backend"] == api.base_url.split("/")[2]
        assert harness.latest_metadata("beta_output")["backend"] == other.base_url.split("/")[2]
        assert harness.latest_metadata("beta_output")["batch_ids"] == [beta_batch]
        assert harness.latest_metadata("alpha_output")["dagster/row_count"] == len(IDS)
        assert harness.latest_metadata("beta_output")["dagster/row_count"] == len(IDS)
