"""The API key reaches the Batch API and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sensor import batch_completion_sensor
from batch_assets.pipeline.sources import JsonlFileSource
from tests.pipeline.harness import Harness

SECRET = "sk-secret-4f1d9a7c2b8e6d3f0a5c"


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_key_appears_in_no_log_metadata_run_config_output_or_file(
    tmp_path: Path, start_local_api, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    api = start_local_api(api_key=SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"s{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    storage = tmp_path / "generated"
    defs = dg.Definitions.merge(
        build_batch_pipeline("secret", JsonlFileSource(source), storage_dir=storage),
        dg.Definitions(
            sensors=[batch_completion_sensor],
            resources={
                "openai_batch": OpenAIBatchResource(
                    api_key=dg.EnvVar("OPENAI_API_KEY"), base_url=api.base_url
                )
            },
        ),
    )
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("")
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        harness = Harness(defs, instance)
        assert harness.materialize(["secret_requests", "secret_batch"]).success
        assert harness.run_requested(harness.tick_until_run_requested()).success

        runs = instance.get_runs()
        assert len(runs) == 2
        for run in runs:
            assert SECRET not in json.dumps(run.run_config)
            assert SECRET not in serialize_value(instance.all_logs(run.run_id))
        records = instance.fetch_materializations(dg.AssetKey("secret_output"), limit=10).records
        assert records and SECRET not in serialize_value(records)

    needle = SECRET.encode()
    assert _files_containing(storage, needle) == []
    assert _files_containing(tmp_path / "dagster_home", needle) == []
    captured = capfd.readouterr()
    assert SECRET not in captured.out and SECRET not in captured.err
    assert api.log().count(SECRET) == 0


def test_a_wrong_key_fails_with_the_error_but_not_the_key(tmp_path: Path, start_local_api) -> None:
    api = start_local_api(api_key="sk-the-right-one")
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps(
            {
                "custom_id": "a",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            }
        )
        + "\n"
    )
    defs = dg.Definitions.merge(
        build_batch_pipeline("wrongkey", JsonlFileSource(source), storage_dir=tmp_path / "g"),
        dg.Definitions(
            resources={
                "openai_batch": OpenAIBatchResource(
                    api_key=SECRET, base_url=api.base_url, max_retries=0
                )
            }
        ),
    )
    with dg.instance_for_test() as instance:
        result = Harness(defs, instance).materialize(
            ["wrongkey_requests", "wrongkey_batch"], raise_on_error=False
        )
        assert not result.success
        error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
        assert "401" in error.to_string()
        assert SECRET not in serialize_value(instance.all_logs(result.run_id))
