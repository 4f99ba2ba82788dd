"""Storage figures on a real S3 server: time and memory for ~200 MB files. One JSON object per line.

- `upload_from_s3`: a ~199 MiB request shard on S3 uploaded to the local Batch API with
  `BatchClient.upload("s3://...")`, streamed from the store. Baseline: the same file uploaded from
  local disk.
- `local_copy_from_s3`: that shard fetched into scratch with `storage.local_copy` (what the
  download stage does with each shard and each downloaded result file before parsing it).
  Baseline: a streamed copy through `storage.open_for_reading`.
- `download_to_s3`: that file's content (the Files API serves any file's bytes) downloaded with
  `BatchClient.download(file_id, "s3://...")`: streamed into scratch, then one multipart upload.
  Baseline: the same download to local disk.
- `download_to_s3_resumed`: the same with the local API's `cut_downloads_after_bytes` fault set,
  so the first transfer is cut and the client resumes it with a Range request (`content_calls`
  is 2).
- `write_parquet_s3`: `storage.write_parquet` of a large frame (random floats and strings, so the
  file stays large) to S3. Baseline: to local disk.
- `read_parquet_s3`: `storage.read_parquet` of that file from S3. Baseline: from local disk.

Every case runs in a fresh interpreter (the S3 credentials and endpoint in its environment, its
TMPDIR a scratch folder of its own): the data to work on is made before, by this process. In the
child, `peak_rss_mb` is the growth of its resident memory over the operation: VmHWM after it
minus VmRSS before, the high-water mark reset just before (`/proc/self/clear_refs`). What every
later call reuses is made before the reset: the S3 filesystem with its botocore service model
(one HeadBucket), the SDK client and its connection, and for the writes the frame; for the read
the frame it returns counts, so its in-memory size is shown beside (`frame_mb`). `s3_requests`
are the calls the S3 server logged during the case, by operation. The streamed cases must stay
far below the file's size (`peak_rss_mb < file_mb / 4`); the read returns the frame, so it may
take what polars takes to read the same file from local disk plus a quarter of the file. Times
are loopback times against moto, which answers each ranged GET from a copy of the whole object:
ranged reads (`upload_from_s3`, the streamed copy) are slower there than on S3.

    .venv/bin/python benchmarks/storage_bench.py
    .venv/bin/python benchmarks/storage_bench.py --mb 50 --only upload_from_s3
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.services` when run as `python benchmarks/...`
    sys.path.insert(0, str(ROOT))

API_KEY = "sk-bench-local"
FILE_MIB = 199  # a batch input file may be at most 200 MiB
MIB = 1024 * 1024
ROWS = 6_000_000  # a ~197 MiB Parquet file, a ~294 MiB frame
# Where the cut download stops: a third of the way, so the resumed part is the larger one.
CUT_FRACTION = 1 / 3
# Streamed transfers may hold a few parts and buffers, never a large part of the file.
MAX_STREAMED_FRACTION = 0.25
# A read returns the frame, and polars needs about half as much again to decode a local file:
# from the store it may take at most a quarter of the file's size more than from local disk.
MAX_READ_EXTRA_FRACTION = 0.25
FIGURES = (
    "upload_from_s3",
    "local_copy_from_s3",
    "download_to_s3",
    "download_to_s3_resumed",
    "write_parquet_s3",
    "read_parquet_s3",
)


# --- the child: one operation, measured --------------------------------------------------------


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def measure(run: Callable[[], Any]) -> dict[str, Any]:
    """Seconds, RSS before and peak RSS growth (MB) of one call; its result under `result`."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    before = _status_mb("VmRSS:")
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(_status_mb("VmHWM:") - before, 1),
        "result": result,
    }


def big_frame(rows: int) -> Any:
    """`rows` rows of an id, three random floats and a random digit string: about 51 bytes a row
    in memory and 34 in Parquet (random values barely compress)."""
    import polars as pl

    ids = pl.int_range(0, rows, eager=True, dtype=pl.Int64).alias("row_id")
    scale = float(2**64)
    return pl.DataFrame({"row_id": ids}).with_columns(
        *((pl.col("row_id").hash(seed) / scale).alias(f"score_{seed}") for seed in (1, 2, 3)),
        label=pl.col("row_id").hash(4).cast(pl.String),
    )


def run_case(case: str, params: dict[str, Any]) -> dict[str, Any]:
    """One operation, in this (fresh) process."""
    from openai import OpenAI

    from batch_assets.core import storage
    from batch_assets.core.batch_client import BatchClient

    # Warm up what every later call reuses, so that the figure is the transfer's own memory:
    # the S3 filesystem and its botocore service model (one HeadBucket), the SDK's client.
    for location in (params.get("location"), params.get("destination")):
        if location and location.startswith("s3://"):
            storage.check_storage(storage.storage_location(location))
    if case in ("upload", "download"):
        client = BatchClient(
            OpenAI(base_url=params["base_url"], api_key=API_KEY, max_retries=0), "local"
        )
        next(client.iter_batches(page_size=1), None)  # one call opens the connection
        if case == "upload":
            figure = measure(lambda: client.upload(params["location"], "shard.jsonl"))
            uploaded = figure.pop("result")
            figure |= {"file_id": uploaded.id, "bytes": uploaded.bytes}
        else:
            figure = measure(lambda: client.download(params["file_id"], params["destination"]))
            figure["bytes"] = figure.pop("result")
        client.close()
        return figure
    if case in ("local_copy", "streamed_copy"):

        def copy() -> int:
            if case == "local_copy":
                with storage.local_copy(params["location"]) as path:
                    return path.stat().st_size
            with (
                storage.open_for_reading(params["location"]) as source,
                tempfile.NamedTemporaryFile() as target,
            ):
                shutil.copyfileobj(source, target, MIB)
                return target.tell()

        figure = measure(copy)
        figure["bytes"] = figure.pop("result")
        return figure
    if case == "write_parquet":
        frame = big_frame(params["rows"])
        figure = measure(lambda: storage.write_parquet(frame, params["destination"]))
        figure.pop("result")
        return figure | {"rows": frame.height, "frame_mb": round(frame.estimated_size() / MIB, 1)}
    if case == "read_parquet":
        figure = measure(lambda: storage.read_parquet(params["location"]))
        frame = figure.pop("result")
        return figure | {"rows": frame.height, "frame_mb": round(frame.estimated_size() / MIB, 1)}
    raise ValueError(f"unknown case {case!r}")


# --- the parent: the data, the servers, the figures --------------------------------------------


def emit(figure: dict[str, Any]) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps(figure), flush=True)


def chat_line(number: int) -> bytes:
    """One chat request line."""
    return (
        json.dumps(
            {
                "custom_id": f"r{number:09d}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Summarise review number {number}."}],
                },
            }
        ).encode()
        + b"\n"
    )


def write_shard(path: Path, target_bytes: int) -> int:
    """Chat requests into `path` until the next would pass `target_bytes`; the file's size."""
    size = 0
    number = 0
    with path.open("wb") as out:
        while True:
            line = chat_line(number)
            if size + len(line) > target_bytes:
                return size
            out.write(line)
            size += len(line)
            number += 1


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


class Bench:
    """The S3 server, the local Batch API and a scratch folder, and a way to run one case."""

    def __init__(self, workdir: Path) -> None:
        from batch_assets.local_api.process import LocalBatchAPIProcess
        from tests.services.s3 import S3Server

        self.workdir = workdir
        self.scratch = workdir / "scratch"
        self.scratch.mkdir()
        self.s3 = S3Server.start(workdir / "s3")
        self.api = LocalBatchAPIProcess(workdir / "api").start()

    def close(self) -> None:
        self.api.stop()
        self.s3.stop()

    def url(self, key: str) -> str:
        return self.s3.url(f"bench/{key}")

    def child(self, case: str, **params: Any) -> dict[str, Any]:
        """Run one case in a fresh interpreter; its figure, with the S3 calls it made."""
        env = os.environ | self.s3.env | {"TMPDIR": str(self.scratch)}
        offset = self.s3.log_offset()
        command = [sys.executable, __file__, "--case", case, "--params", json.dumps(params)]
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=env)
        time.sleep(0.2)  # the server writes its log line after answering
        left = sorted(path.name for path in self.scratch.iterdir())
        assert not left, f"{case} left {left} in its scratch folder"
        figure = json.loads(out.stdout.strip().splitlines()[-1])
        calls = self.s3.requests_since(offset)
        return figure | {"s3_requests": dict(sorted(calls.items()))}

    def s3_size_and_sha256(self, key: str) -> tuple[int, str]:
        body = self.s3.client().get_object(Bucket=self.s3.bucket, Key=f"bench/{key}")["Body"]
        digest = hashlib.sha256()
        size = 0
        for chunk in body.iter_chunks(MIB):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()

    def put(self, source: Path, key: str) -> None:
        self.s3.client().upload_file(str(source), self.s3.bucket, f"bench/{key}")

    def delete(self, key: str) -> None:
        self.s3.client().delete_object(Bucket=self.s3.bucket, Key=f"bench/{key}")


def seconds(value: float) -> float:
    return round(value, 3)


def streamed_figure(
    name: str, ours: dict[str, Any], baseline: dict[str, Any], file_bytes: int, **extra: Any
) -> dict[str, Any]:
    file_mb = round(file_bytes / MIB, 1)
    limit = round(file_mb * MAX_STREAMED_FRACTION, 1)
    return {
        "name": name,
        "n": 1,
        "file_mb": file_mb,
        "ours_s": seconds(ours["seconds"]),
        "baseline_s": seconds(baseline["seconds"]),
        "ratio": round(baseline["seconds"] / ours["seconds"], 2),
        "mb_per_s": round(file_mb / ours["seconds"], 1),
        "peak_rss_mb": ours["peak_rss_mb"],
        "baseline_peak_rss_mb": baseline["peak_rss_mb"],
        "rss_before_mb": ours["rss_before_mb"],
        "s3_requests": ours["s3_requests"],
        **extra,
        "target": f"peak_rss_mb < {limit} (file_mb * {MAX_STREAMED_FRACTION})",
        "met": ours["peak_rss_mb"] < limit and extra.get("same_bytes", True),
    }


def bench_transfers(bench: Bench, mib: int, only: set[str]) -> None:
    """upload_from_s3, download_to_s3 and download_to_s3_resumed."""
    source = bench.workdir / "shard.jsonl"
    size = write_shard(source, mib * MIB)
    digest = sha256_of_file(source)
    bench.put(source, "shard.jsonl")
    base_url = bench.api.base_url

    from_s3 = bench.child("upload", base_url=base_url, location=bench.url("shard.jsonl"))
    from_disk = bench.child("upload", base_url=base_url, location=str(source))
    assert from_s3["bytes"] == size == from_disk["bytes"], (from_s3, from_disk, size)
    if "upload_from_s3" in only:
        emit(streamed_figure("upload_from_s3", from_s3, from_disk, size, same_bytes=True))
    if "local_copy_from_s3" in only:
        ours = bench.child("local_copy", location=bench.url("shard.jsonl"))
        baseline = bench.child("streamed_copy", location=bench.url("shard.jsonl"))
        assert ours["bytes"] == size == baseline["bytes"], (ours["bytes"], baseline["bytes"])
        emit(streamed_figure("local_copy_from_s3", ours, baseline, size))
    bench.delete("shard.jsonl")
    source.unlink()
    # Each file's first download is the one the fault cuts: one file for the plain downloads,
    # the other for the resumed one.
    plain_id, cut_id = from_s3["file_id"], from_disk["file_id"]

    if "download_to_s3" in only:
        target = bench.workdir / "download.jsonl"
        baseline = bench.child(
            "download", base_url=base_url, file_id=plain_id, destination=str(target)
        )
        assert target.stat().st_size == size and sha256_of_file(target) == digest
        target.unlink()
        ours = bench.child(
            "download", base_url=base_url, file_id=plain_id, destination=bench.url("download.jsonl")
        )
        same = bench.s3_size_and_sha256("download.jsonl") == (size, digest)
        bench.delete("download.jsonl")
        emit(streamed_figure("download_to_s3", ours, baseline, size, same_bytes=same))

    if "download_to_s3_resumed" in only:
        cut = int(size * CUT_FRACTION)
        bench.api.configure(cut_downloads_after_bytes=cut)
        bench.api.admin("DELETE", "stats")
        try:
            ours = bench.child(
                "download",
                base_url=base_url,
                file_id=cut_id,
                destination=bench.url("resumed.jsonl"),
            )
        finally:
            bench.api.configure(cut_downloads_after_bytes=None)
        calls = bench.api.admin("GET", "stats")["calls"]
        content_calls = sum(count for route, count in calls.items() if route.endswith("/content"))
        same = bench.s3_size_and_sha256("resumed.jsonl") == (size, digest)
        bench.delete("resumed.jsonl")
        # The baseline: the same file, uncut, to local disk (its first download is spent).
        target = bench.workdir / "resumed.jsonl"
        baseline = bench.child(
            "download", base_url=base_url, file_id=cut_id, destination=str(target)
        )
        target.unlink()
        figure = streamed_figure(
            "download_to_s3_resumed",
            ours,
            baseline,
            size,
            cut_after_mb=round(cut / MIB, 1),
            content_calls=content_calls,
            same_bytes=same,
        )
        figure["met"] = figure["met"] and content_calls == 2
        figure["target"] += " and content_calls == 2"
        emit(figure)


def bench_parquet(bench: Bench, rows: int, only: set[str]) -> None:
    """write_parquet_s3 and read_parquet_s3."""
    local = bench.workdir / "frame.parquet"
    base_write = bench.child("write_parquet", rows=rows, destination=str(local))
    file_mb = round(local.stat().st_size / MIB, 1)
    ours_write = bench.child("write_parquet", rows=rows, destination=bench.url("frame.parquet"))
    frame_mb = ours_write["frame_mb"]
    assert bench.s3_size_and_sha256("frame.parquet")[0] > 0
    if "write_parquet_s3" in only:
        emit(
            {
                **streamed_figure("write_parquet_s3", ours_write, base_write, local.stat().st_size),
                "n": rows,
                "frame_mb": frame_mb,
            }
        )
    if "read_parquet_s3" in only:
        base_read = bench.child("read_parquet", location=str(local))
        ours_read = bench.child("read_parquet", location=bench.url("frame.parquet"))
        assert ours_read["rows"] == rows == base_read["rows"]
        limit = round(base_read["peak_rss_mb"] + file_mb * MAX_READ_EXTRA_FRACTION, 1)
        emit(
            {
                "name": "read_parquet_s3",
                "n": rows,
                "file_mb": file_mb,
                "frame_mb": frame_mb,
                "ours_s": seconds(ours_read["seconds"]),
                "baseline_s": seconds(base_read["seconds"]),
                "ratio": round(base_read["seconds"] / ours_read["seconds"], 2),
                "mb_per_s": round(file_mb / ours_read["seconds"], 1),
                "peak_rss_mb": ours_read["peak_rss_mb"],
                "baseline_peak_rss_mb": base_read["peak_rss_mb"],
                "rss_before_mb": ours_read["rss_before_mb"],
                "peak_over_frame_mb": round(ours_read["peak_rss_mb"] - frame_mb, 1),
                "s3_requests": ours_read["s3_requests"],
                "target": f"peak_rss_mb < {limit} "
                f"(baseline_peak_rss_mb + file_mb * {MAX_READ_EXTRA_FRACTION})",
                "met": ours_read["peak_rss_mb"] < limit,
            }
        )
    bench.delete("frame.parquet")
    local.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=FILE_MIB, help="the shard's size in MiB")
    parser.add_argument(
        "--rows", type=int, default=ROWS, help="the Parquet frame's rows (~34 bytes each)"
    )
    parser.add_argument("--only", choices=FIGURES, action="append")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        figure = run_case(args.case, json.loads(args.params))
        print(json.dumps(figure), flush=True)
        return
    only = set(args.only or FIGURES)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            if only & set(FIGURES[:4]):
                bench_transfers(bench, args.mb, only)
            if only & {"write_parquet_s3", "read_parquet_s3"}:
                bench_parquet(bench, args.rows, only)
        finally:
            bench.close()


if __name__ == "__main__":
    main()
