"""Where the pipeline's files live: a local folder or any fsspec filesystem, through UPath.

Every file is written whole or not at all. On local disk a writer fills a locked temporary beside
the destination and renames it (`atomic.py`); on an object store it fills a scratch file under
`TMPDIR` and sends it as one PUT or one multipart upload, which the store shows only once it is
complete. Readers take a local copy in scratch where they need a file on disk. Credentials come
from each provider's standard environment; no URL shown to users carries any.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, cast
from urllib.parse import urlsplit, urlunsplit

import fsspec
import polars as pl
from upath import UPath

from batch_assets.core.atomic import atomic_path as atomic_local_path
from batch_assets.core.atomic import remove_orphaned_temporaries as remove_orphaned_local

LOCAL_PROTOCOLS = frozenset({"", "file", "local"})
# The schemes a Dagster deployment stores files on, and the extra that installs each.
EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
}
SCRATCH_PREFIX = "batch_assets-"
# Parts of a multipart upload, and reads of a stream from the store.
UPLOAD_PART_BYTES = 16 * 1024 * 1024
DOWNLOAD_PART_BYTES = 8 * 1024 * 1024
# s3fs sends `max_concurrency` parts at once (10 by default) and holds each about twice: 320 MiB
# for a file over 160 MiB. It also gathers a file over its 50 MiB block size in memory as that many
# ranged GETs, unless it takes one at a time. One at a time, an upload holds about 32 MiB and a
# download streams to disk, whatever the file's size (`benchmarks/storage_bench.py`).
S3_PROTOCOLS = frozenset({"s3", "s3a"})
S3_TRANSFER_CONCURRENCY = 1
S3_ENVIRONMENT = (
    "for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or AWS_DEFAULT_REGION, and "
    "AWS_ENDPOINT_URL for an S3-compatible store"
)
# A multipart upload this old under the pipeline's prefix was left by a killed run.
ORPHANED_UPLOAD_SECONDS = 3600.0


Location = str | os.PathLike[str] | UPath  # a URL, a local path, or a UPath


class StorageError(ValueError):
    """A storage setting that cannot work: an unknown scheme, a missing bucket or credentials."""


def safe_url(url: str | os.PathLike[str]) -> str:
    """`url` without user, password, query or fragment: fit for logs, errors and metadata."""
    text = os.fspath(url)
    parts = urlsplit(text)
    if not parts.scheme or len(parts.scheme) == 1:  # a plain path (or a Windows drive)
        return text
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_local(location: UPath) -> bool:
    """Whether `location` is on this machine's disk."""
    return location.protocol in LOCAL_PROTOCOLS


def local_path(location: UPath) -> Path:
    """The local path of a location on this machine's disk."""
    if not is_local(location):
        raise ValueError(f"{safe_url(str(location))} is not on local disk")
    return Path(location.path)


def url_of(location: UPath) -> str:
    """The location as a URL, `file:///...` on local disk: what records and metadata keep."""
    if is_local(location):
        return local_path(location).resolve().as_uri()
    return location.as_uri()


def storage_location(url: Location, *, setting: str = "storage_dir") -> UPath:
    """A plain path, `file://...` or any fsspec URL, as a UPath; a clear error names `setting`.

    Checks that the scheme is known and its filesystem installed; touches nothing remote.
    """
    if isinstance(url, UPath):
        location = url
    else:
        text = os.fspath(url)
        scheme = urlsplit(text).scheme
        if len(scheme) > 1 and scheme not in fsspec.available_protocols():
            raise StorageError(
                f"{setting}={safe_url(text)}: unknown scheme '{scheme}://'; use a path, "
                "file://, s3://, gs:// or az://"
            )
        location = UPath(text) if len(scheme) > 1 else UPath(Path(text).absolute())
    if location.protocol in S3_PROTOCOLS:
        _honour_aws_region()
    if not is_local(location):
        try:
            fsspec.get_filesystem_class(location.protocol)
        except ImportError as error:
            extra = EXTRAS.get(location.protocol)
            hint = f"pip install 'batch-assets[{extra}]'" if extra else str(error)
            raise StorageError(
                f"{setting}={safe_url(str(location))}: the {location.protocol}:// filesystem is "
                f"not installed ({hint})"
            ) from None
    return location


def _honour_aws_region() -> None:
    """Let `AWS_REGION`, the region variable of AWS's other SDKs, count for s3fs too: botocore
    reads only `AWS_DEFAULT_REGION`. Set as fsspec's default for every S3 filesystem, so Dagster's
    own UPath IO managers get it as well."""
    region = os.environ.get("AWS_REGION")
    if region and not os.environ.get("AWS_DEFAULT_REGION"):
        defaults = fsspec.config.conf.setdefault("s3", {})
        defaults.setdefault("client_kwargs", {}).setdefault("region_name", region)


def _bucket(location: UPath) -> str:
    return location.path.split("/", 1)[0]


@cache
def _checked(url: str, setting: str) -> None:
    location = UPath(url)
    bucket = _bucket(location)
    try:
        location.fs.info(bucket)
    except FileNotFoundError:
        raise StorageError(
            f"{setting}={safe_url(url)}: the bucket '{bucket}' does not exist (create it first)"
        ) from None
    except PermissionError:
        raise StorageError(
            f"{setting}={safe_url(url)}: access to the bucket '{bucket}' was denied; check "
            f"the credentials in the provider's environment ({S3_ENVIRONMENT})"
        ) from None
    except Exception as error:  # botocore's NoCredentialsError, a refused endpoint, ...
        raise StorageError(
            f"{setting}={safe_url(url)}: cannot reach the bucket '{bucket}' "
            f"({type(error).__name__}: {safe_url(str(error))}); check the credentials and "
            f"endpoint in the provider's environment ({S3_ENVIRONMENT})"
        ) from None


def check_storage(location: UPath, *, setting: str = "storage_dir") -> None:
    """Fail early and clearly if the bucket is missing or unreachable; once per process."""
    if is_local(location):
        return
    _checked(location.as_uri(), setting)


def _scratch_file(name: str) -> Path:
    """A new empty file under TMPDIR, the run's scratch space."""
    handle, scratch = tempfile.mkstemp(prefix=f"{SCRATCH_PREFIX}{name}.", suffix=".partial")
    os.close(handle)
    return Path(scratch)


def _put_kwargs(location: UPath) -> dict[str, int]:
    """s3fs's part size and concurrency; other filesystems keep their own defaults."""
    if location.protocol in S3_PROTOCOLS:
        return {"chunksize": UPLOAD_PART_BYTES, "max_concurrency": S3_TRANSFER_CONCURRENCY}
    return {}


def _get_kwargs(location: UPath) -> dict[str, int]:
    return {"max_concurrency": S3_TRANSFER_CONCURRENCY} if location.protocol in S3_PROTOCOLS else {}


def publish(scratch: Path, destination: UPath) -> None:
    """Send a finished scratch file to `destination` on an object store, whole: the store shows
    it once the single PUT or the multipart upload is complete."""
    destination.fs.put_file(os.fspath(scratch), destination.path, **_put_kwargs(destination))


@contextmanager
def atomic_path(destination: Location) -> Iterator[Path]:
    """A local path to write; `destination` holds it, whole, once the block succeeds."""
    destination = storage_location(destination)
    if is_local(destination):
        with atomic_local_path(local_path(destination)) as temporary:
            yield temporary
        return
    scratch = _scratch_file(destination.name)
    try:
        yield scratch
        publish(scratch, destination)
    finally:
        scratch.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame, destination: Location) -> str:
    """Write a frame as Parquet, atomically; its URL."""
    destination = storage_location(destination)
    with atomic_path(destination) as temporary:
        frame.write_parquet(temporary)
    return url_of(destination)


def sink_parquet(frame: pl.LazyFrame, destination: Location) -> str:
    """Stream a lazy frame into Parquet, atomically; its URL."""
    destination = storage_location(destination)
    with atomic_path(destination) as temporary:
        frame.sink_parquet(temporary)
    return url_of(destination)


@contextmanager
def local_copy(location: Location) -> Iterator[Path]:
    """The file on local disk for the block: itself, or a scratch copy taken from the store."""
    location = storage_location(location)
    if is_local(location):
        yield local_path(location)
        return
    scratch = _scratch_file(location.name)
    try:
        location.fs.get_file(location.path, os.fspath(scratch), **_get_kwargs(location))
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)


def open_for_reading(location: Location) -> IO[bytes]:
    """A binary stream of the file, read piece by piece (never whole into memory)."""
    location = storage_location(location)
    if is_local(location):
        return local_path(location).open("rb")
    # fsspec has no type hints: its `open` in binary mode returns a binary file object.
    return cast(IO[bytes], location.fs.open(location.path, "rb", block_size=DOWNLOAD_PART_BYTES))


def read_parquet(location: Location, columns: list[str] | None = None) -> pl.DataFrame:
    """A Parquet file read whole, from disk or from the store (through a scratch copy: polars
    reads a Python stream whole into memory before it decodes it)."""
    with local_copy(location) as path:
        return pl.read_parquet(path, columns=columns)


def exists(location: Location) -> bool:
    """Whether a finished file is at `location` (temporaries are never there)."""
    return storage_location(location).exists()


def remove_orphaned_temporaries(
    root: UPath, *, older_than_seconds: float = ORPHANED_UPLOAD_SECONDS
) -> list[str]:
    """What killed writers left under `root`, removed: the URLs (or upload ids) it found.

    Local disk: temporaries no live writer holds locked. S3: multipart uploads under the prefix
    started more than `older_than_seconds` ago, aborted (their parts cost storage, and no reader
    can see them). Other stores expire unfinished uploads by themselves.
    """
    if is_local(root):
        return [path.as_uri() for path in remove_orphaned_local(local_path(root))]
    if root.protocol not in S3_PROTOCOLS:
        return []
    fs = root.fs
    bucket, _, prefix = root.path.partition("/")
    removed: list[str] = []
    cutoff = time.time() - older_than_seconds
    for upload in fs.list_multipart_uploads(bucket):
        key = upload.get("Key", "")
        started = upload.get("Initiated")
        if not key.startswith(prefix) or started is None or started.timestamp() > cutoff:
            continue
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        removed.append(f"s3://{bucket}/{key} (upload {upload['UploadId']})")
    return removed


def describe_removed(removed: list[str], log: Callable[[str], None]) -> None:
    """Say what the orphan sweep removed, if anything."""
    if removed:
        log(
            f"Removed {len(removed)} unfinished write(s) that killed runs left behind: "
            f"{', '.join(removed[:5])}"
        )
