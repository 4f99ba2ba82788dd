"""The gateway's throughput against calling its upstream directly: one JSON object per line.

One upstream (a local API with its default settings: it answers at once, a zero-latency
upstream) and, for each concurrency C, a gateway (`--upstream URL --upstream-concurrency C`).

- direct: n chat requests sent straight to the upstream's `/v1/chat/completions`, C in flight
  at once, with the HTTP client the gateway uses (aiohttp); `direct_rps` = n / wall time.
  (httpx is no baseline: at C = 16 its clients, not the upstream, set the rate, ~950 requests/s
  from 16 threads against ~1,500 for aiohttp here.)
- gateway: the same n requests as one batch input file uploaded to the gateway, timed from
  `batches.create` until `batches.retrieve` (polled every 20 ms) says `completed`;
  `gateway_rps` = n / that time. The output file must hold n lines, all status 200.

`overhead_ms_per_request` = (1 / gateway_rps - 1 / direct_rps) * 1000: what the gateway adds to
each request's share of the wall time (the throughput view, the one issue 16's target uses:
under 1 ms, and `ratio` = gateway_rps / direct_rps at least 0.8). `overhead_ms_latency` is that
times C: the extra time each request spends with C in flight. Each side is run `--reps` times and
the best kept. `upstream_max_in_flight` is the most requests the upstream saw at once during the
best gateway run (from its `/admin/sync_stats`).

Usage: python benchmarks/gateway_bench.py [--n 5000] [--reps 2] [--concurrency 16 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from openai import OpenAI

from batch_assets.local_api.process import LocalBatchAPIProcess

MODEL = "gpt-4o-mini"
POLL_SECONDS = 0.02
TERMINAL = {"completed", "failed", "expired", "cancelled"}
MAX_OVERHEAD_MS = 1.0
MIN_RATIO = 0.8
TARGET = (
    f"(1/gateway_rps - 1/direct_rps)*1000 < {MAX_OVERHEAD_MS} (overhead_ms_per_request, "
    f"throughput) and gateway_rps >= {MIN_RATIO} * direct_rps"
)


def chat_body(i: int) -> dict[str, Any]:
    """The i-th chat request's body."""
    return {"model": MODEL, "messages": [{"role": "user", "content": f"question {i}"}]}


def batch_input(count: int) -> bytes:
    """`count` chat requests as a batch input file (JSONL)."""
    return b"".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body(i),
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def direct_seconds(upstream: LocalBatchAPIProcess, count: int, concurrency: int) -> float:
    """Wall time of `count` chat requests straight to the upstream, `concurrency` in flight, with
    the HTTP client the gateway uses (aiohttp: one session, its connections opened before the
    clock starts)."""
    return asyncio.run(_direct_seconds(upstream.base_url + "/chat/completions", count, concurrency))


async def _direct_seconds(url: str, count: int, concurrency: int) -> float:
    numbers = iter(range(count))
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(i: int) -> None:
            async with session.post(url, json=chat_body(i)) as reply:
                if reply.status != 200:
                    failures.append(f"direct request {i}: {reply.status} {await reply.text()}")
                await reply.read()

        async def work() -> None:
            for i in numbers:
                await send(i)

        await asyncio.gather(*(send(-1 - n) for n in range(concurrency)))  # connect, not timed
        started = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[0])
    return elapsed


def gateway_seconds(
    gateway: LocalBatchAPIProcess, upstream: LocalBatchAPIProcess, data: bytes, count: int
) -> tuple[float, int]:
    """Seconds from `batches.create` to `completed` for the batch of `data` through the gateway,
    and the most requests the upstream had in flight meanwhile."""
    client = OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    uploaded = client.files.create(file=("gateway.jsonl", data), purpose="batch")
    upstream.admin("DELETE", "sync_stats")
    started = time.perf_counter()
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while (batch := client.batches.retrieve(batch.id)).status not in TERMINAL:
        time.sleep(POLL_SECONDS)
    elapsed = time.perf_counter() - started
    stats = upstream.admin("GET", "sync_stats")
    if batch.status != "completed" or batch.output_file_id is None:
        raise RuntimeError(f"gateway batch ended {batch.status}: {batch.model_dump_json()}")
    lines = client.files.content(batch.output_file_id).content.splitlines()
    statuses = [json.loads(line)["response"]["status_code"] for line in lines]
    if len(lines) != count or any(status != 200 for status in statuses):
        bad = sum(status != 200 for status in statuses)
        raise RuntimeError(f"gateway output: {len(lines)} lines of {count}, {bad} not 200")
    return elapsed, int(stats.get("max_in_flight", -1))


def bench(upstream: LocalBatchAPIProcess, scratch: Path, args: argparse.Namespace) -> None:
    data = batch_input(args.n)
    for concurrency in args.concurrency:
        gateway = LocalBatchAPIProcess(
            scratch / f"gateway_c{concurrency}",
            (
                "--upstream",
                upstream.base_url,
                "--upstream-concurrency",
                str(concurrency),
            ),
        )
        try:
            gateway.start()
            direct = min(direct_seconds(upstream, args.n, concurrency) for _ in range(args.reps))
            runs = [gateway_seconds(gateway, upstream, data, args.n) for _ in range(args.reps)]
            through, max_in_flight = min(runs)
        finally:
            gateway.stop()
        direct_rps, gateway_rps = args.n / direct, args.n / through
        overhead = (1 / gateway_rps - 1 / direct_rps) * 1000
        ratio = gateway_rps / direct_rps
        print(
            json.dumps(
                {
                    "name": f"gateway_c{concurrency}",
                    "n": args.n,
                    "concurrency": concurrency,
                    "direct_s": round(direct, 3),
                    "gateway_s": round(through, 3),
                    "direct_rps": round(direct_rps, 1),
                    "gateway_rps": round(gateway_rps, 1),
                    "ratio": round(ratio, 3),
                    "overhead_ms_per_request": round(overhead, 3),
                    "overhead_ms_latency": round(overhead * concurrency, 2),
                    "upstream_max_in_flight": max_in_flight,
                    "target": TARGET,
                    "met": overhead < MAX_OVERHEAD_MS and ratio >= MIN_RATIO,
                    "load_1min": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="chat requests per run")
    parser.add_argument("--reps", type=int, default=2, help="runs of each side; the best kept")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        upstream = LocalBatchAPIProcess(scratch / "upstream")
        try:
            upstream.start()
            bench(upstream, scratch, args)
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
