"""Storage on local disk and on a real S3 server: whole files or none, clear errors, no secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from upath import UPath

from batch_assets.core import storage
from batch_assets.core.storage import StorageError
from tests.local_api_server import wait_for
from tests.services.s3 import S3Server


def test_plain_paths_and_file_urls_are_local_and_recorded_as_file_urls(tmp_path: Path) -> None:
    for given in (tmp_path / "a", str(tmp_path / "a"), (tmp_path / "a").as_uri()):
        location = storage.storage_location(given)
        assert storage.is_local(location)
        assert storage.local_path(location) == tmp_path / "a"
        assert storage.url_of(location) == (tmp_path / "a").as_uri()


def test_a_relative_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage.local_path(storage.storage_location("data/out")) == tmp_path / "data" / "out"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://AKIDSECRET:topsecret@bucket/prefix?token=abc#x", "s3://bucket/prefix"),
        ("https://user:pw@host:9000/a/b?sig=1", "https://host:9000/a/b"),
        ("/plain/path", "/plain/path"),
    ],
)
def test_safe_url_drops_credentials_queries_and_fragments(url: str, expected: str) -> None:
    assert storage.safe_url(url) == expected


def test_an_unknown_scheme_names_the_setting_and_the_url_without_secrets() -> None:
    with pytest.raises(StorageError) as raised:
        storage.storage_location("nosuch://user:hunter2@bucket/p", setting="MY_SETTING")
    assert str(raised.value).startswith("MY_SETTING=nosuch://bucket/p: unknown scheme")
    assert "hunter2" not in str(raised.value)


def test_a_scheme_whose_filesystem_is_not_installed_says_which_extra_to_install() -> None:
    # gcsfs is not among the dev dependencies; `batch-assets[gcs]` brings it.
    with pytest.raises(StorageError, match=r"gs://bucket/p: .*pip install 'batch-assets\[gcs\]'"):
        storage.storage_location("gs://bucket/p")


def test_a_missing_bucket_fails_with_the_setting_and_the_url(s3: S3Server) -> None:
    location = storage.storage_location("s3://no-such-bucket/prefix")
    with pytest.raises(StorageError) as raised:
        storage.check_storage(location, setting="BATCH_ASSETS_STORAGE_DIR")
    message = str(raised.value)
    assert message.startswith("BATCH_ASSETS_STORAGE_DIR=s3://no-such-bucket/prefix: ")
    assert "'no-such-bucket' does not exist" in message
    storage.check_storage(storage.storage_location(s3.url("prefix")))  # the real bucket passes


def test_missing_credentials_fail_clearly_in_a_process_without_them(
    s3: S3Server, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no ~/.aws either
        "AWS_ENDPOINT_URL": s3.endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    code = (
        "from batch_assets.core import storage\n"
        f"storage.check_storage(storage.storage_location({s3.url('p')!r}), setting='S')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert f"StorageError: S={s3.url('p')}: cannot reach the bucket" in done.stderr
    assert "NoCredentialsError" in done.stderr
    assert "AWS_ACCESS_KEY_ID" in done.stderr


def test_a_failed_write_to_s3_leaves_the_previous_object_and_no_scratch(
    s3: S3Server, scratch: Path
) -> None:
    target = UPath(s3.url("atomic/out.txt"))
    with storage.atomic_path(target) as temporary:
        temporary.write_text("previous")
    with pytest.raises(RuntimeError), storage.atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash mid-write")
    assert s3.read("atomic/out.txt") == b"previous"
    assert s3.object_keys("atomic/") == ["atomic/out.txt"]
    assert list(scratch.iterdir()) == []


def test_parquet_round_trips_through_s3_and_records_its_url(s3: S3Server, scratch: Path) -> None:
    frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    url = storage.write_parquet(frame, s3.url("tables/t.parquet"))
    assert url == s3.url("tables/t.parquet")
    assert storage.read_parquet(url).equals(frame)
    assert storage.read_parquet(url, columns=["b"]).equals(frame.select("b"))
    with storage.local_copy(url) as copy:
        assert pl.read_parquet(copy).equals(frame)
    assert list(scratch.iterdir()) == []


UPLOAD_THEN_WAIT = """
import sys
from pathlib import Path
from batch_assets.core import storage
scratch = Path(sys.argv[2])
with scratch.open("wb") as out:
    for _ in range(3):
        out.write(b"x" * storage.UPLOAD_PART_BYTES)
storage.publish(scratch, storage.storage_location(sys.argv[1]))
"""


def test_a_writer_killed_mid_upload_leaves_no_object_and_the_sweep_aborts_its_upload(
    s3: S3Server, tmp_path: Path
) -> None:
    """A file of three parts goes up as a multipart upload; SIGKILL after its first part."""
    client = s3.client()
    key = "killed/big.bin"

    def parts_uploaded() -> bool:
        uploads = client.list_multipart_uploads(Bucket=s3.bucket, Prefix=key).get("Uploads", [])
        return any(
            client.list_parts(Bucket=s3.bucket, Key=key, UploadId=upload["UploadId"]).get("Parts")
            for upload in uploads
        )

    writer = subprocess.Popen(
        [sys.executable, "-c", UPLOAD_THEN_WAIT, s3.url(key), str(tmp_path / "big.bin")],
        env={**os.environ},
    )
    try:
        wait_for(parts_uploaded, timeout=120, interval=0.005)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert key not in s3.object_keys("killed/")
    root = storage.storage_location(s3.url("killed"))
    # moto reports every upload as started in 2010, so the age rule itself is not exercised here.
    removed = storage.remove_orphaned_temporaries(root, older_than_seconds=0)
    assert len(removed) == 1 and removed[0].startswith(f"s3://{s3.bucket}/{key} (upload ")
    assert client.list_multipart_uploads(Bucket=s3.bucket, Prefix=key).get("Uploads", []) == []


def test_the_sweep_leaves_uploads_of_other_prefixes_alone(s3: S3Server) -> None:
    client = s3.client()
    other = client.create_multipart_upload(Bucket=s3.bucket, Key="someone-else/file.bin")
    try:
        root = storage.storage_location(s3.url("mine"))
        assert storage.remove_orphaned_temporaries(root, older_than_seconds=0) == []
        uploads = client.list_multipart_uploads(Bucket=s3.bucket, Prefix="someone-else/")
        assert [u["UploadId"] for u in uploads["Uploads"]] == [other["UploadId"]]
    finally:
        client.abort_multipart_upload(
            Bucket=s3.bucket, Key="someone-else/file.bin", UploadId=other["UploadId"]
        )


def test_aws_region_counts_for_s3fs_as_it_does_for_the_other_aws_sdks(
    s3: S3Server, tmp_path: Path
) -> None:
    """botocore reads only AWS_DEFAULT_REGION; AWS_REGION alone must still set the region."""
    env = {**os.environ, "AWS_REGION": "eu-west-3", "HOME": str(tmp_path)}
    env.pop("AWS_DEFAULT_REGION", None)
    code = (
        "import dagster as dg\n"
        "from upath import UPath\n"
        "from batch_assets.core import storage\n"
        f"location = storage.storage_location({s3.url('region')!r})\n"
        "print(location.fs.client_kwargs['region_name'])\n"
        f"print(UPath({s3.url('other')!r}).fs.client_kwargs['region_name'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["eu-west-3", "eu-west-3"]
