"""The batch client against the local Batch API over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import openai
import pytest
from openai.types import Batch

from batch_assets.core.batch_client import BackendSettings, BatchClient, listed_batch
from tests.local_api.helpers import chat_request, jsonl
from tests.local_api_server import LocalBatchAPI, wait_for


def _requests_file(path: Path, count: int, prefix: str = "r") -> Path:
    path.write_bytes(jsonl([chat_request(f"{prefix}{i}") for i in range(count)]))
    return path


@pytest.fixture
def client(start_local_api) -> BatchClient:
    server: LocalBatchAPI = start_local_api()
    return BatchClient.connect(BackendSettings(api_key="sk-x", base_url=server.base_url))


def test_host_is_shown_and_the_key_is_not() -> None:
    settings = BackendSettings(api_key="sk-secret", base_url="http://127.0.0.1:9/v1")
    assert settings.host == "127.0.0.1:9"
    assert "sk-secret" not in repr(BatchClient(settings.build_client(), settings.host).host)
    assert BackendSettings().host == "api.openai.com"


def test_upload_create_find_and_download(client: BatchClient, tmp_path: Path) -> None:
    source = _requests_file(tmp_path / "in.jsonl", 3)
    uploaded = client.upload(source)
    assert (uploaded.filename, uploaded.bytes) == ("in.jsonl", source.stat().st_size)
    batch = client.create(
        uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"key": "k1"},
    )
    done = wait_for(lambda: (b := client.retrieve(batch.id)).status == "completed" and b)

    target = tmp_path / "out" / "output.jsonl"
    size = client.download(done.output_file_id, target)
    assert size == target.stat().st_size
    assert sorted(json.loads(line)["custom_id"] for line in target.read_text().splitlines()) == [
        "r0",
        "r1",
        "r2",
    ]
    assert client.find_by_metadata("key", {"k1", "k2"}) == {"k1": done}


def _create_batches(client: BatchClient, file_id: str, count: int) -> list[str]:
    return [
        client.create(
            file_id, endpoint="/v1/chat/completions", completion_window="24h", metadata={}
        ).id
        for _ in range(count)
    ]


def test_find_batches_reads_as_many_list_pages_as_the_batches_fill(
    start_local_api, tmp_path: Path
) -> None:
    server: LocalBatchAPI = start_local_api()
    client = BatchClient.connect(BackendSettings(api_key="sk-x", base_url=server.base_url))
    uploaded = client.upload(_requests_file(tmp_path / "in.jsonl", 1))
    ids = _create_batches(client, uploaded.id, 7)
    server.admin("DELETE", "stats")

    found = client.find_batches(set(ids), page_size=2, extra_pages=0)

    assert {batch_id: batch.id for batch_id, batch in found.items()} == {i: i for i in ids}
    # 7 batches fill 4 pages of 2: four list calls, no retrieve
    assert server.admin("GET", "stats")["calls"] == {"GET /v1/batches": 4}


def test_find_batches_retrieves_what_the_pages_leave_out(start_local_api, tmp_path: Path) -> None:
    server: LocalBatchAPI = start_local_api()
    client = BatchClient.connect(BackendSettings(api_key="sk-x", base_url=server.base_url))
    uploaded = client.upload(_requests_file(tmp_path / "in.jsonl", 1))
    ids = _create_batches(client, uploaded.id, 7)
    _create_batches(client, uploaded.id, 5)  # newer batches of others, listed first
    server.admin("DELETE", "stats")

    found = client.find_batches(set(ids), page_size=2, extra_pages=1)

    assert {batch_id: batch.id for batch_id, batch in found.items()} == {i: i for i in ids}
    # 4 + 1 pages of 2 show the 5 others and 5 of ours; the 2 oldest are retrieved
    assert server.admin("GET", "stats")["calls"] == {
        "GET /v1/batches": 5,
        "GET /v1/batches/{id}": 2,
    }


def test_a_listed_batch_newer_than_the_sdk_is_kept_as_it_came(
    client: BatchClient, tmp_path: Path
) -> None:
    uploaded = client.upload(_requests_file(tmp_path / "in.jsonl", 1))
    listed = client.create(
        uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={}
    ).model_dump()

    assert listed_batch(listed) == Batch.model_validate(listed)
    newer = listed | {"status": "paused", "priority": "low"}  # what this SDK does not know
    batch = listed_batch(newer)
    assert (batch.id, batch.status) == (listed["id"], "paused")
    assert batch.model_extra == {"priority": "low"}


def test_a_failed_download_leaves_no_file(client: BatchClient, tmp_path: Path) -> None:
    target = tmp_path / "downloads" / "missing.jsonl"
    with pytest.raises(openai.NotFoundError):
        client.download("file-doesnotexist", target)
    assert list(target.parent.iterdir()) == []


def _completed_output(client: BatchClient, tmp_path: Path, count: int) -> str:
    uploaded = client.upload(_requests_file(tmp_path / "in.jsonl", count))
    batch = client.create(
        uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={}
    )
    done = wait_for(lambda: (b := client.retrieve(batch.id)).status == "completed" and b)
    assert done.output_file_id is not None
    return done.output_file_id


def test_a_download_cut_midway_is_resumed_whole(start_local_api, tmp_path: Path) -> None:
    server: LocalBatchAPI = start_local_api()
    client = BatchClient.connect(BackendSettings(api_key="sk-x", base_url=server.base_url))
    file_id = _completed_output(client, tmp_path, 40)
    expected = server.client().files.content(file_id).content
    server.configure(cut_downloads_after_bytes=1000)
    server.admin("DELETE", "stats")

    target = tmp_path / "out" / "output.jsonl"
    size = client.download(file_id, target)

    assert target.read_bytes() == expected
    assert size == len(expected) > 1000
    assert server.admin("GET", "stats")["calls"] == {"GET /v1/files/{id}/content": 2}
    assert [path.name for path in target.parent.iterdir()] == ["output.jsonl"]


def test_a_cut_download_with_no_attempt_left_leaves_no_file(
    start_local_api, tmp_path: Path
) -> None:
    server: LocalBatchAPI = start_local_api()
    client = BatchClient.connect(BackendSettings(api_key="sk-x", base_url=server.base_url))
    file_id = _completed_output(client, tmp_path, 40)
    server.configure(cut_downloads_after_bytes=500)

    target = tmp_path / "out" / "output.jsonl"
    with pytest.raises(httpx2.RemoteProtocolError):
        client.download(file_id, target, attempts=1)
    assert list(target.parent.iterdir()) == []


def test_find_files_pages_through_and_newest_wins(client: BatchClient, tmp_path: Path) -> None:
    source = _requests_file(tmp_path / "in.jsonl", 1)
    first_a = client.upload(source, "a.jsonl")
    client.upload(source, "b.jsonl")
    newest_a = client.upload(source, "a.jsonl")
    for i in range(5):
        client.upload(source, f"other{i}.jsonl")
    assert newest_a.created_at >= first_a.created_at

    found = client.find_files({"a.jsonl", "b.jsonl", "missing.jsonl"}, page_size=2)

    assert set(found) == {"a.jsonl", "b.jsonl"}
    assert found["a.jsonl"].id == newest_a.id
    assert client.find_files({"b.jsonl"}, page_size=2, max_pages=1) == {}
