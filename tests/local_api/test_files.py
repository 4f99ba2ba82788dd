"""`/v1/files`: upload, list, retrieve, stream and delete."""

from __future__ import annotations

import urllib.request

import openai
import pytest
from openai import OpenAI

from tests.local_api.helpers import chat_request, jsonl
from tests.local_api_server import LocalBatchAPI, wait_for


def test_upload_retrieve_download_delete(client: OpenAI) -> None:
    data = jsonl([chat_request("a"), chat_request("b")])
    uploaded = client.files.create(file=("reqs.jsonl", data), purpose="batch")

    assert uploaded.id.startswith("file-")
    assert (uploaded.filename, uploaded.purpose, uploaded.bytes) == (
        "reqs.jsonl",
        "batch",
        len(data),
    )
    assert uploaded.status == "processed"
    assert uploaded.expires_at == uploaded.created_at + 30 * 86400
    assert client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id).content == data
    with client.files.with_streaming_response.content(uploaded.id) as response:
        assert b"".join(response.iter_bytes(chunk_size=7)) == data

    deleted = client.files.delete(uploaded.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (uploaded.id, "file", True)
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve(uploaded.id)
    assert caught.value.body == {
        "message": f"No such File object: {uploaded.id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(uploaded.id)


def test_batch_upload_must_be_named_jsonl(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("requests.json", b"{}\n"), purpose="batch")
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "Invalid file format for Batch API. Must be .jsonl",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_bytes_upload_without_a_name_is_refused_for_batch(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        client.files.create(file=b"{}\n", purpose="batch")


def test_unknown_purpose_is_refused(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "purpose"


def test_expires_after_sets_expiry_and_the_file_goes_when_it_passes(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    uploaded = client.files.create(
        file=("short.jsonl", b"{}\n"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert uploaded.expires_at == uploaded.created_at + 3600
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(
            file=("short.jsonl", b"{}\n"),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 60},
        )
    assert caught.value.body["param"] == "expires_after[seconds]"

    local_api.configure(clock_offset_seconds=3601)
    wait_for(lambda: uploaded.id not in {f.id for f in client.files.list(purpose="batch")})
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)


def test_batch_input_over_200_mb_is_refused(client: OpenAI, tmp_path) -> None:
    big = tmp_path / "big.jsonl"
    line = b'{"custom_id": "x", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
    with big.open("wb") as handle:
        for _ in range(200 * 1024 * 1024 // len(line) + 1):
            handle.write(line)
    assert big.stat().st_size > 200 * 1024 * 1024
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=big, purpose="batch")
    assert caught.value.body["param"] == "file"
    assert "209,715,200 bytes" in caught.value.body["message"]


def test_files_list_pages_in_both_orders(start_local_api) -> None:
    client = start_local_api().client()
    uploaded = [
        client.files.create(file=(f"f{i}.jsonl", b"{}\n"), purpose="batch").id for i in range(7)
    ]
    client.files.create(file=("other.txt", b"x"), purpose="user_data")

    newest_first = [f.id for f in client.files.list(purpose="batch", limit=3)]
    oldest_first = [f.id for f in client.files.list(purpose="batch", limit=3, order="asc")]
    assert newest_first == uploaded[::-1]
    assert oldest_first == uploaded

    page = client.files.list(purpose="batch", limit=3)
    assert [f.id for f in page.data] == uploaded[:-4:-1]
    assert page.has_more is True
    assert len(client.files.list(limit=10000).data) == 8
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.list(limit=0)
    assert caught.value.body["param"] == "limit"


def test_content_honours_range_requests(local_api: LocalBatchAPI, client: OpenAI) -> None:
    data = jsonl([chat_request(f"r{i}") for i in range(50)])
    uploaded = client.files.create(file=("ranged.jsonl", data), purpose="batch")
    request = urllib.request.Request(
        f"{local_api.base_url}/files/{uploaded.id}/content", headers={"Range": "bytes=100-"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206
        assert response.read() == data[100:]
