"""A real S3 endpoint on 127.0.0.1: moto's standalone server, with one bucket made.

    s3 = S3Server.start(tmp_path / "s3")
    os.environ.update(s3.env)  # AWS_ACCESS_KEY_ID, ..., AWS_ENDPOINT_URL
    s3.object_keys()  # every object key in the bucket
    s3.stop()

The server keeps objects in memory; its working directory and TMPDIR are `root`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.services import die_with_parent, free_port, read_log, stop_process, wait_until

# One moto log line per HTTP request: `127.0.0.1 - - [date] "PUT /bucket/key?query HTTP/1.1" 200 -`.
LOG_LINE = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) /([^ ?"]*)(\?[^ "]*)? HTTP/[\d.]+" (\d+)')
# Werkzeug colours some lines (206, 404) with ANSI escapes inside the quotes.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
READY_TIMEOUT_SECONDS = 60.0
START_ATTEMPTS = 3
ACCESS_KEY_ID = "testing-access-key"
SECRET_ACCESS_KEY = "testing-secret-key"  # moto accepts any credentials
REGION = "us-east-1"


@dataclass
class S3Server:
    """A running `python -m moto.server` on 127.0.0.1:`port`, and its bucket."""

    root: Path
    port: int
    bucket: str = "batch-assets-test"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "moto.log"

    @property
    def endpoint_url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment an AWS SDK (boto3, s3fs) needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def url(self, prefix: str = "") -> str:
        """`s3://bucket/prefix`."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def client(self) -> Any:
        """A boto3 S3 client for this server (no retries, short timeouts)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`, sorted."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        """One object's bytes."""
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def log(self) -> str:
        """What the server wrote."""
        return read_log(self.log_path)

    def log_offset(self) -> int:
        """Where the server's log ends now: pass it to `requests_since`."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def requests_since(self, offset: int) -> Counter[str]:
        """The S3 calls on the bucket logged after `offset`, by operation (`PutObject`, ...)."""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            text = ANSI_ESCAPE.sub("", log.read().decode(errors="replace"))
        calls: Counter[str] = Counter()
        for match in LOG_LINE.finditer(text):
            method, path, query, _status = match.groups()
            bucket, _, key = path.partition("/")
            if bucket == self.bucket:  # not moto's own API (`/moto-api/`)
                calls[operation(method, key, query or "")] += 1
        return calls

    @classmethod
    def start(cls, root: Path, *, bucket: str = "batch-assets-test") -> S3Server:
        """Start the server on a free port, wait until it answers, create `bucket`."""
        root.mkdir(parents=True, exist_ok=True)
        server = cls(root=root, port=0, bucket=bucket)
        for attempt in range(START_ATTEMPTS):
            server.port = free_port()
            try:
                server._start_process()
                break
            except RuntimeError:
                # Another process may have taken the port between our probe and the bind.
                stop_process(server.process, signal.SIGKILL)
                if attempt == START_ATTEMPTS - 1:
                    raise
        server.client().create_bucket(Bucket=bucket)
        return server

    def _start_process(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TMPDIR": str(self.root),
            "HOME": str(self.root),
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
                preexec_fn=die_with_parent,
            )
        wait_until(
            self._answers,
            process=self.process,
            timeout=READY_TIMEOUT_SECONDS,
            what="moto.server",
            log=self.log,
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server; its objects go with it."""
        stop_process(self.process, signal.SIGTERM)

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def operation(method: str, key: str, query: str) -> str:
    """The S3 API operation one logged request was, e.g. `PutObject`, `UploadPart`."""
    params = {part.split("=", 1)[0] for part in query.lstrip("?").split("&") if part}
    if not key:
        for param, name in (
            ("list-type", "ListObjectsV2"),
            ("uploads", "ListMultipartUploads"),
            ("delete", "DeleteObjects"),
        ):
            if param in params:
                return name
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket"}.get(method, f"{method} bucket")
    if "uploads" in params:
        return "CreateMultipartUpload"
    if "partNumber" in params:
        return "UploadPart"
    if "uploadId" in params:
        return {"POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload"}.get(
            method, "ListParts"
        )
    return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject"}.get(
        method, "DeleteObject"
    )
