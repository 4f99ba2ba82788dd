"""The whole pipeline once through the gateway (issue 16): a local Batch API started with
`--upstream`, sending each request of the batch to a second local API process's synchronous
`/v1/chat/completions` instead of answering it with the local models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from batch_assets.local_api.local_models import RequestRejected, respond
from batch_assets.local_api.sync_calls import body_digest
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import build_harness, calls, result_frames

NAME = "tickets"
IDS = [f"t{i:02d}" for i in range(30)]


@pytest.fixture
def upstream(start_local_api: object) -> LocalBatchAPI:
    """A local API process of its own, answering only on its synchronous endpoints here."""
    return start_local_api(name="upstream")  # type: ignore[operator,no-any-return]


@pytest.fixture
def gateway(start_local_api: object, upstream: LocalBatchAPI) -> LocalBatchAPI:
    """A local Batch API sending every request of its batches to `upstream`."""
    return start_local_api("--upstream", upstream.base_url, name="gateway")  # type: ignore[operator,no-any-return]


def uploaded_requests(server: LocalBatchAPI) -> dict[str, dict[str, Any]]:
    """Every request line of the batch input files uploaded to `server`, by custom_id."""
    client = server.client()
    lines = [
        json.loads(line)
        for file in client.files.list(purpose="batch")
        for line in client.files.content(file.id).text.splitlines()
    ]
    return {line["custom_id"]: line for line in lines}


def test_the_whole_pipeline_runs_once_through_the_gateway(
    upstream: LocalBatchAPI, gateway: LocalBatchAPI, tmp_path: Path
) -> None:
    with dg.instance_for_test() as instance:
        harness = build_harness(gateway, tmp_path, instance, name=NAME, custom_ids=IDS)
        assert harness.submit(NAME).success
        result = harness.download()

        # Complete: every request answered, once, in the output; nothing in the errors.
        assert result.success
        output, errors = result_frames(result, NAME)
        assert sorted(output["custom_id"].to_list()) == IDS
        assert output["status_code"].unique().to_list() == [200]
        assert output["answer"].null_count() == 0
        assert errors.height == 0
        stored_output, stored_errors = harness.latest_frames(NAME)
        assert stored_output.sort("custom_id").equals(output.sort("custom_id"))
        assert stored_errors.height == 0
        metadata = harness.latest_metadata(f"{NAME}_output")
        assert metadata["error_files"] == []
        assert metadata["backend"] == gateway.root_url.removeprefix("http://")

        # Correct: each custom_id holds the model's answer to its own request.
        requests = uploaded_requests(gateway)
        assert sorted(requests) == IDS
        for row in output.iter_rows(named=True):
            line = requests[row["custom_id"]]
            answer = respond(line["url"], line["body"], created=0)
            assert row["answer"] == answer["choices"][0]["message"]["content"], row["custom_id"]
            assert row["model"] == answer["model"]
            usage = (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])
            assert (row["input_tokens"], row["output_tokens"]) == usage, row["custom_id"]

        # The upstream answered every request exactly once, synchronously: no batch of its own.
        stats = upstream.admin("GET", "sync_stats")
        assert stats["answered"] == stats["received"] == len(IDS)
        assert stats["answered_bodies"] == {
            body_digest(line["body"]): 1 for line in requests.values()
        }
        assert calls(upstream, "POST /v1/chat/completions") == len(IDS)
        assert calls(upstream, "POST /v1/batches") == 0
        assert calls(gateway, "POST /v1/batches") == 1
        assert calls(gateway, "POST /v1/chat/completions") == 0

        # The batch's usage (the gateway's sum of the upstream's) is the output's, and its
        # metadata's.
        [batch_id] = harness.latest_metadata(f"{NAME}_batch")["batch_ids"]
        assert output["batch_id"].unique().to_list() == [batch_id]
        batch = gateway.client().batches.retrieve(batch_id)
        assert batch.status == "completed"
        assert batch.request_counts is not None and batch.usage is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (len(IDS), 0)
        assert batch.usage.input_tokens == output["input_tokens"].sum() > 0
        assert batch.usage.output_tokens == output["output_tokens"].sum() > 0
        assert batch.usage.total_tokens == output["total_tokens"].sum()
        assert metadata["usage_source"] == "batch usage"
        assert metadata["openai.prompt_tokens"] == batch.usage.input_tokens
        assert metadata["openai.completion_tokens"] == batch.usage.output_tokens
        assert metadata["openai.total_tokens"] == batch.usage.total_tokens
        assert metadata["openai.calls"] == len(IDS)


def test_requests_the_upstream_refuses_land_in_the_errors_once_with_its_answer(
    upstream: LocalBatchAPI, gateway: LocalBatchAPI, tmp_path: Path
) -> None:
    broken = {"t07", "t21"}  # the same body (no messages): folded into one request sent
    with dg.instance_for_test() as instance:
        harness = build_harness(
            gateway, tmp_path, instance, name=NAME, custom_ids=IDS, broken=broken
        )
        harness.submit(NAME)
        result = harness.run_until_downloaded(f"{NAME}_output")

        assert result.success
        assert harness.latest_metadata(f"{NAME}_requests")["duplicates_folded"] == 1
        requests = uploaded_requests(gateway)
        [sent_broken] = broken & set(requests)
        assert len(requests) == len(IDS) - 1
        output, errors = result_frames(result, NAME)
        assert sorted(output["custom_id"].to_list()) == sorted(set(IDS) - broken)
        assert output["status_code"].unique().to_list() == [200]
        assert sorted(errors["custom_id"].to_list()) == sorted(broken)
        assert harness.latest_metadata(f"{NAME}_errors")["dagster/row_count"] == len(broken)
        # The upstream's own 400 (status, code and message) for both, not retried: the
        # request's own fault.
        line = requests[sent_broken]
        with pytest.raises(RequestRejected) as refused:
            respond(line["url"], line["body"], created=0)
        envelope = refused.value.envelope()["error"]
        assert errors["status_code"].to_list() == [400, 400]
        assert errors["error_code"].to_list() == [envelope["code"]] * 2
        assert errors["error_message"].to_list() == [envelope["message"]] * 2
        assert errors["attempts"].to_list() == [1, 1]

        # Each request sent went to the upstream once; it answered all but the broken one.
        stats = upstream.admin("GET", "sync_stats")
        assert stats["received"] == len(requests)
        assert stats["answered"] == len(requests) - 1
        assert stats["answered_bodies"] == {
            body_digest(line["body"]): 1
            for custom_id, line in requests.items()
            if custom_id != sent_broken
        }
        assert calls(gateway, "POST /v1/batches") == 1
