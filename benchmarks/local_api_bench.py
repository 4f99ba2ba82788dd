"""Figures for the local Batch API: one JSON object per line.

- `batch_50k`: seconds from create to completed for 5,000 and then 50,000 chat requests (no
  simulated work), with the growth and issue 15's target (<= 1.0 s at 50,000).
- `poll_latency`: milliseconds per `batches.retrieve` while a batch runs (p50, p99, max).
- `upload_download_200mb`: a ~199 MB batch input uploaded and streamed back; the server's peak
  RSS growth shows whether memory stays bounded.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from openai import OpenAI

from batch_assets.local_api.process import LocalBatchAPIProcess


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def chat_lines(count: int, prefix: str = "r") -> bytes:
    """`count` chat requests as JSONL."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"{prefix}{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Summarise review number {i}."}],
                },
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def wait_done(client: OpenAI, batch_id: str) -> str:
    """Poll until the batch ends; its final status."""
    while (status := client.batches.retrieve(batch_id).status) not in {
        "completed",
        "failed",
        "expired",
        "cancelled",
    }:
        time.sleep(0.05)
    return status


def emit(figure: dict) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps(figure), flush=True)


BATCH_TARGET_S = 1.0  # issue 15: 50,000 chat requests from create to completed


def timed_batch(client: OpenAI, count: int) -> dict:
    """Upload `count` chat requests and time the batch from create to completed."""
    data = chat_lines(count)
    started = time.perf_counter()
    uploaded = client.files.create(file=("big.jsonl", data), purpose="batch")
    uploaded_at = time.perf_counter()
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    status = wait_done(client, batch.id)
    finished = time.perf_counter()
    assert status == "completed", status
    return {
        "n": count,
        "upload_s": round(uploaded_at - started, 3),
        "create_to_completed_s": round(finished - uploaded_at, 3),
        "input_mb": round(len(data) / 1e6, 1),
    }


def bench_batch_50k(client: OpenAI) -> None:
    """batch_50k at n/10 and at n, with its growth and issue 15's target."""
    small = timed_batch(client, 5_000)
    emit({"name": "batch_50k", **small})
    large = timed_batch(client, 50_000)
    emit(
        {
            "name": "batch_50k",
            **large,
            "growth_vs_n": {
                "from_n": small["n"],
                "input_x": large["n"] / small["n"],
                "create_to_completed_x": round(
                    large["create_to_completed_s"] / small["create_to_completed_s"], 2
                ),
            },
            "target": f"create_to_completed_s <= {BATCH_TARGET_S}",
            "met": large["create_to_completed_s"] <= BATCH_TARGET_S,
            "load_1min": round(os.getloadavg()[0], 2),
        }
    )


def bench_poll_latency(server: LocalBatchAPIProcess, client: OpenAI) -> None:
    server.configure(seconds_per_request=0.0002)
    uploaded = client.files.create(file=("poll.jsonl", chat_lines(20_000, "p")), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    timings = []
    statuses = set()
    for _ in range(300):
        started = time.perf_counter()
        statuses.add(client.batches.retrieve(batch.id).status)
        timings.append((time.perf_counter() - started) * 1000)
    server.configure(seconds_per_request=0.0)
    wait_done(client, batch.id)
    timings.sort()
    emit(
        {
            "name": "poll_latency",
            "n": len(timings),
            "p50_ms": round(statistics.median(timings), 2),
            "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2),
            "max_ms": round(timings[-1], 2),
            "statuses_seen": sorted(statuses),
        }
    )


def bench_upload_download(server: LocalBatchAPIProcess, client: OpenAI, scratch: Path) -> None:
    assert server.process is not None
    source = scratch / "big.jsonl"
    line = chat_lines(1, "x").replace(b'"x0"', b'"x%09d"')
    size = 0
    with source.open("wb") as handle:
        number = 0
        while size < 199 * 1024 * 1024:
            chunk = line.replace(b"%09d", b"%09d" % number)
            handle.write(chunk)
            size += len(chunk)
            number += 1
    before = peak_rss_mb(server.process.pid)
    started = time.perf_counter()
    uploaded = client.files.create(file=source, purpose="batch")
    uploaded_at = time.perf_counter()
    target = scratch / "copy.jsonl"
    with (
        client.files.with_streaming_response.content(uploaded.id) as response,
        target.open("wb") as out,
    ):
        for chunk in response.iter_bytes(1024 * 1024):
            out.write(chunk)
    finished = time.perf_counter()
    assert target.stat().st_size == size
    emit(
        {
            "name": "upload_download_200mb",
            "n": number,
            "file_mb": round(size / 1e6, 1),
            "upload_s": round(uploaded_at - started, 2),
            "download_s": round(finished - uploaded_at, 2),
            "server_peak_rss_before_mb": round(before, 1),
            "server_peak_rss_after_mb": round(peak_rss_mb(server.process.pid), 1),
        }
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        server = LocalBatchAPIProcess(scratch / "state").start()
        try:
            client = OpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0)
            bench_batch_50k(client)
            bench_poll_latency(server, client)
            bench_upload_download(server, client, scratch)
        finally:
            server.stop()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
