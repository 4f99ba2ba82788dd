"""Pipeline figures on the local Batch API and a real Dagster instance: one JSON object per line.

- `sensor_tick`: one tick of `batch_completion_sensor` with 5,000 batches in flight (each its own
  submission, so the tick also reads 5,000 materializations), against one `batches.retrieve` per
  batch; then the same with 500. Target: at most ceil(n / 100) + 1 API calls (one listing page
  of 100 batches each, and one more) and under 2 s.
- `end_to_end`: n chat requests from a polars DataFrame, 4 shards, through every stage to the
  joined results, at n=20,000 and n=200,000, each stage the best of 3 runs (each run in its own
  process, so each peak RSS is its own); the second line also shows how each stage grew for 10x
  the input. Target at 200,000: the local Batch API's answering (`batch_wait`) within 6 s.
  `batch_wait` runs from the end of the submitting run until the sensor tick that finds every
  batch ended; while waiting, the benchmark lists the batches every 50 ms (one call) and ticks
  the sensor only once they have all ended.
  `--storage s3` runs it with the pipeline's storage on a real S3 server (moto over HTTP on
  loopback, started here; its credentials and endpoint are set only in the child process
  that runs the pipeline, with `BATCH_ASSETS_STORAGE_DIR=s3://bucket/prefix`); that figure also
  counts the objects written under the pipeline's prefix (`objects_written`: a few per shard and
  table, none per request) and the S3 calls the run made (`s3_requests`, from the server's log).
  `--storage local --storage s3` prints both. The upstream frame stays where Dagster's default
  IO manager keeps it (the instance's folder), on both storages.

    .venv/bin/python benchmarks/pipeline_bench.py
    .venv/bin/python benchmarks/pipeline_bench.py --figure end_to_end --n 200000
    .venv/bin/python benchmarks/pipeline_bench.py --figure end_to_end --n 200000 --storage s3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
from openai import OpenAI

from batch_assets.core.batch_client import TERMINAL_STATUSES
from batch_assets.core.limits import BatchLimits
from batch_assets.core.records import SubmittedBatch
from batch_assets.core.request_template import RequestTemplate
from batch_assets.local_api.process import LocalBatchAPIProcess
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.keys import STORAGE_DIR_VARIABLE
from batch_assets.pipeline.ledger import AttemptRecord
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sensor import batch_completion_sensor
from batch_assets.pipeline.sources import DataFrameSource, IteratorSource

if TYPE_CHECKING:
    from tests.services.s3 import S3Server

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-bench-local"
REPEATS = 3
IN_FLIGHT_SIZES = (5_000, 500)
LIST_PAGE = 100  # batches per page of `batches.list`, the most the API returns at once
MAX_TICK_SECONDS = 2.0
END_TO_END_SIZES = (20_000, 200_000)
SHARDS = 4
# 10x the input may cost up to 15x the time before a stage counts as worse than linear: the
# machine is noisy and the small size carries relatively more fixed cost in most stages.
MAX_GROWTH = 15.0
STORAGES = ("local", "s3")
# Objects one end_to_end run may leave under the pipeline's prefix on S3: per shard its request
# file and the batch's output and error files; besides, the run's output and errors Parquet, the
# IO manager's errors and results tables, three pickled records and one to spare. However many
# requests.
MAX_OBJECTS_PER_SHARD = 3
# Issue 15: the local Batch API answers the 200,000 requests of end_to_end in 6 s or less.
BATCH_WAIT_TARGET = (200_000, 6.0)
MAX_OTHER_OBJECTS = 8
SENTIMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "topics": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sentiment", "topics"],
    "additionalProperties": False,
}
STAGES = (
    "render_shard_s",
    "upload_create_s",
    "batch_wait_s",
    "sensor_tick_s",
    "download_parse_s",
    "results_join_s",
)


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class RssSampler:
    """Samples this process's RSS in a thread, to tell which stage reached the peak."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), rss_mb()))
            self._stop.wait(self.interval)

    def peak(self, start: float, end: float) -> float:
        """The largest RSS sampled between two wall-clock times (time.time())."""
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return round(max(inside), 1) if inside else 0.0


def emit(figure: dict[str, Any]) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps(figure), flush=True)


def best_of(repeats: int, run: Callable[[], float]) -> float:
    """The smallest of `repeats` timings."""
    return min(run() for _ in range(repeats))


def sensor_resources(api: LocalBatchAPIProcess) -> dict[str, Any]:
    """The resources the sensor needs, pointed at the local Batch API."""
    return {"openai_batch": OpenAIBatchResource(api_key=API_KEY, base_url=api.base_url)}


def tick(
    instance: dg.DagsterInstance, defs: dg.Definitions, cursor: str | None
) -> tuple[dg.SensorResult, float]:
    """One evaluation of batch_completion_sensor, as the daemon runs it; its result and seconds."""
    started = time.perf_counter()
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources=dict(defs.resources or {}),
    ) as context:
        result = batch_completion_sensor(context)
    elapsed = time.perf_counter() - started
    assert isinstance(result, dg.SensorResult)
    return result, elapsed


def batches_ended(client: OpenAI, count: int) -> bool:
    """Whether the local Batch API holds `count` batches, all in a terminal status."""
    statuses = [batch.status for batch in client.batches.list(limit=100)]
    return len(statuses) == count and set(statuses) <= TERMINAL_STATUSES


def api_calls(api: LocalBatchAPIProcess) -> dict[str, int]:
    """The /v1 calls the local Batch API has answered since the last reset, per route."""
    return api.admin("GET", "stats")["calls"]


def no_requests() -> Iterator[dict[str, Any]]:
    """The fleet pipeline's source; the sensor benchmark never builds its requests."""
    yield from ()


def start_in_flight(client: OpenAI, count: int) -> list[str]:
    """`count` batches on one small file, left running; their ids once all are validated."""
    line = {
        "custom_id": "only",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello."}]},
    }
    uploaded = client.files.create(
        file=("one.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch"
    )
    batch_ids = [
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(count)
    ]
    deadline = time.monotonic() + 60
    while any(batch.status == "validating" for batch in client.batches.list(limit=100)):
        assert time.monotonic() < deadline, "batches still validating after 60 s"
        time.sleep(0.1)
    return batch_ids


def max_tick_calls(in_flight: int) -> int:
    """The API calls a tick may make: one listing page per 100 batches in flight, and one more."""
    return math.ceil(in_flight / LIST_PAGE) + 1


def bench_sensor_tick(in_flight: int, repeats: int) -> dict[str, Any]:
    """One sensor tick with `in_flight` batches in flight, against one retrieve per batch."""
    with tempfile.TemporaryDirectory() as tmp:
        # Nothing finishes for days at this pace: every batch stays in flight.
        api = LocalBatchAPIProcess(
            Path(tmp) / "api", flags=("--seconds-per-request", "1000000")
        ).start()
        try:
            client = OpenAI(base_url=api.base_url, api_key=API_KEY, max_retries=0)
            batch_ids = start_in_flight(client, in_flight)
            client.close()
            defs = dg.Definitions.merge(
                build_batch_pipeline(
                    "fleet", IteratorSource(no_requests), storage_dir=Path(tmp) / "generated"
                ),
                dg.Definitions(sensors=[batch_completion_sensor], resources=sensor_resources(api)),
            )
            with dg.instance_for_test(temp_dir=tmp) as instance:
                for batch_id in batch_ids:
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(
                            asset_key=dg.AssetKey("fleet_batch"),
                            metadata=AttemptRecord(
                                1, (SubmittedBatch(batch_id, "file", batch_id, "", 1, None),)
                            ).to_metadata(),
                        )
                    )
                ticks: list[tuple[float, int]] = []
                for _ in range(repeats):
                    api.admin("DELETE", "stats")
                    result, seconds = tick(instance, defs, cursor=None)
                    calls = api_calls(api)
                    pending = json.loads(result.cursor or "{}").get("pending", {})
                    watched = {
                        batch_id for entry in pending.values() for batch_id in entry["batch_ids"]
                    }
                    assert watched == set(batch_ids), f"the tick watched {len(watched)} batches"
                    assert not result.run_requests, "no batch has ended"
                    ticks.append((seconds, sum(calls.values())))
                ours_s = min(seconds for seconds, _ in ticks)
                calls_made = max(count for _, count in ticks)
                routes = calls

            def retrieve_each() -> float:
                baseline = OpenAI(base_url=api.base_url, api_key=API_KEY)
                started = time.perf_counter()
                for batch_id in batch_ids:
                    baseline.batches.retrieve(batch_id)
                elapsed = time.perf_counter() - started
                baseline.close()
                return elapsed

            api.admin("DELETE", "stats")
            baseline_s = best_of(repeats, retrieve_each)
            baseline_calls = sum(api_calls(api).values()) // repeats
            server_rss = peak_rss_mb(api.process.pid) if api.process else None
        finally:
            api.stop()
    max_calls = max_tick_calls(in_flight)
    met = calls_made <= max_calls and ours_s < MAX_TICK_SECONDS
    figure = {
        "name": "sensor_tick",
        "n": in_flight,
        "ours_s": round(ours_s, 4),
        "baseline_s": round(baseline_s, 4),
        "ratio": round(baseline_s / ours_s, 2),
        "peak_rss_mb": peak_rss_mb(),
        "api_calls": calls_made,
        "api_calls_by_route": routes,
        "baseline_api_calls": baseline_calls,
        "submissions": in_flight,
        "server_peak_rss_mb": server_rss,
        "target": f"api_calls <= {max_calls} and ours_s < {MAX_TICK_SECONDS}",
        "met": met,
    }
    return figure


def review_frame(n: int) -> pl.DataFrame:
    """n review rows with an integer id and text of varied length."""
    ids = pl.int_range(0, n, eager=True).alias("review_id") + 1_000_000
    return pl.DataFrame({"review_id": ids}).with_columns(
        product=pl.format("Trail pack {}", pl.col("review_id") % 97),
        text=pl.format(
            'Review {}: the "straps" dig in after {} km; otherwise great. été ☃',
            pl.col("review_id"),
            pl.col("review_id") % 40 + 1,
        ),
    )


def step_windows(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> dict[str, tuple[float, float]]:
    """Each successful step's start and end (wall clock): inputs, compute and outputs."""
    starts: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            windows[event.step_key] = (starts[event.step_key], entry.timestamp)
    return windows


def end_to_end_once(n: int, workdir: Path, storage_dir: str | Path | None) -> dict[str, Any]:
    """One run of the whole pipeline on a fresh local Batch API and Dagster instance.

    `storage_dir` None: the storage $BATCH_ASSETS_STORAGE_DIR names (the S3 run sets it).
    """
    frame = review_frame(n)

    @dg.asset(name="e2e_reviews")
    def reviews() -> pl.DataFrame:
        """The upstream rows."""
        return frame

    api = LocalBatchAPIProcess(workdir / "api", flags=("--seconds-per-request", "0")).start()
    try:
        pipeline = build_batch_pipeline(
            "e2e",
            DataFrameSource(
                upstream="e2e_reviews",
                template=RequestTemplate(
                    endpoint="/v1/chat/completions",
                    model="gpt-4o-mini",
                    system_prompt="You label customer reviews of outdoor gear.",
                    user_template="Product: {product}\nReview: {text}",
                    params={"temperature": 0, "max_tokens": 100},
                    response_format=SENTIMENT_SCHEMA,
                    custom_id_column="review_id",
                ),
            ),
            limits=BatchLimits(max_requests=math.ceil(n / SHARDS)),
            storage_dir=storage_dir,
        )
        defs = dg.Definitions.merge(
            pipeline,
            dg.Definitions(
                assets=[reviews], sensors=[batch_completion_sensor], resources=sensor_resources(api)
            ),
        )
        job = defs.resolve_implicit_global_asset_job_def()
        with dg.instance_for_test(temp_dir=str(workdir)) as instance, RssSampler() as sampler:
            started = time.time()
            submit = job.execute_in_process(
                instance=instance,
                asset_selection=[
                    dg.AssetKey("e2e_reviews"),
                    dg.AssetKey("e2e_requests"),
                    dg.AssetKey("e2e_batch"),
                ],
            )
            submitted = time.time()
            windows = step_windows(instance, submit)
            shards = submit.output_for_node("e2e_requests").shards
            # Wait for the batches with one cheap list call every 50 ms, then let the sensor
            # see them: a sensor tick every 0.2 s (~50 ms of CPU each) took a tenth of this
            # two-core machine from the server it was waiting for.
            with OpenAI(base_url=api.base_url, api_key=API_KEY, max_retries=0) as client:
                while not batches_ended(client, len(shards)):
                    assert time.time() - submitted < 600, "the batches did not end within 10 min"
                    time.sleep(0.05)
            cursor: str | None = None
            request: dg.RunRequest | None = None
            while request is None:
                tick_started = time.time()
                result, tick_s = tick(instance, defs, cursor)
                tick_ended = time.time()
                cursor = result.cursor
                for event in result.asset_events or []:
                    instance.report_runless_asset_event(event)
                if result.run_requests:
                    request = result.run_requests[0]
                    break
                assert tick_started - submitted < 600, "the batches did not end within 10 min"
                time.sleep(0.2)
            assert request.asset_selection is not None
            download = job.execute_in_process(
                instance=instance, asset_selection=list(request.asset_selection), tags=request.tags
            )
            finished = time.time()
            windows |= step_windows(instance, download)
            windows["wait"] = (submitted, tick_started)
            windows["tick"] = (tick_started, tick_ended)
            results = download.output_for_node("e2e_results")
            answered = results.filter(pl.col("answer").is_not_null()).height
            assert results.height == n and answered == n, (results.height, answered)
            with OpenAI(base_url=api.base_url, api_key=API_KEY) as client:
                statuses = {batch.status for batch in client.batches.list(limit=100)}
            assert statuses <= TERMINAL_STATUSES, statuses
        server_rss = peak_rss_mb(api.process.pid) if api.process else None
    finally:
        api.stop()
    stage_windows = {
        "upstream_s": windows["e2e_reviews"],
        "render_shard_s": windows["e2e_requests"],
        "upload_create_s": windows["e2e_batch"],
        "batch_wait_s": windows["wait"],
        "sensor_tick_s": windows["tick"],
        "download_parse_s": windows["e2e_download"],
        "results_join_s": windows["e2e_results"],
    }
    return {
        "total_s": finished - started,
        **{stage: end - start for stage, (start, end) in stage_windows.items()},
        "sensor_tick_s": tick_s,
        "stage_peak_rss_mb": {
            stage.removesuffix("_s"): sampler.peak(start, end)
            for stage, (start, end) in stage_windows.items()
        },
        "shards": len(shards),
        "requests_mb": round(sum(shard.n_bytes for shard in shards) / 2**20, 1),
        "server_peak_rss_mb": server_rss,
    }


def end_to_end_run(n: int, storage: str) -> dict[str, Any]:
    """One repetition in this process, with this process's peak RSS.

    On S3 the storage is $BATCH_ASSETS_STORAGE_DIR, which the parent set with the AWS variables.
    """
    if storage == "s3":
        assert os.environ.get(STORAGE_DIR_VARIABLE, "").startswith("s3://"), "no S3 storage set"
    with tempfile.TemporaryDirectory() as tmp:
        storage_dir = Path(tmp) / "generated" if storage == "local" else None
        run = end_to_end_once(n, Path(tmp), storage_dir)
    return {**run, "peak_rss_mb": peak_rss_mb()}


def delete_prefix(s3: S3Server, prefix: str) -> None:
    """Remove a run's objects, so that the server's memory does not grow run after run."""
    client = s3.client()
    keys = s3.object_keys(prefix)
    for start in range(0, len(keys), 1000):
        client.delete_objects(
            Bucket=s3.bucket,
            Delete={"Objects": [{"Key": key} for key in keys[start : start + 1000]]},
        )


def end_to_end_in_child(n: int, s3: S3Server | None = None) -> dict[str, Any]:
    """One repetition in a fresh interpreter, so that its peak RSS is its own.

    With `s3`, the child's storage is a fresh prefix in its bucket: the AWS variables and
    $BATCH_ASSETS_STORAGE_DIR are set in the child's environment only. The objects it wrote and
    the S3 calls it made are counted, then the objects removed.
    """
    storage = "local" if s3 is None else "s3"
    command = [sys.executable, __file__, "--figure", "end_to_end", "--n", str(n), "--raw"]
    command += ["--storage", storage]
    if s3 is None:
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    prefix = f"bench/e2e-{n}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch:
        env = os.environ | s3.env | {STORAGE_DIR_VARIABLE: s3.url(prefix), "TMPDIR": scratch}
        offset = s3.log_offset()
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
        time.sleep(0.2)  # the server writes its log line after answering
        calls = s3.requests_since(offset)
        # What the run left in its scratch (TMPDIR): its own temporary folder is gone by now.
        scratch_left = sorted(path.name for path in Path(scratch).iterdir())
    keys = s3.object_keys(prefix + "/")
    delete_prefix(s3, prefix + "/")
    run = json.loads(out.strip().splitlines()[-1])
    pipeline_keys = [key.removeprefix(f"{prefix}/e2e/") for key in keys]
    return {
        **run,
        "objects_written": len(keys),
        "objects_by_folder": dict(Counter(object_folder(key) for key in pipeline_keys)),
        "s3_requests": sum(calls.values()),
        "s3_requests_by_kind": dict(sorted(calls.items())),
        "scratch_left": scratch_left,
    }


def object_folder(key: str) -> str:
    """`downloads`, `tables`, `records`, or `<run>/requests`, `<run>/results` as `run/...`."""
    parts = key.split("/")
    if parts[0] in ("downloads", "tables", "records"):
        return parts[0]
    return "run/" + "/".join(parts[1:-1]) if len(parts) > 2 else "run"


def bench_end_to_end(n: int, repeats: int, s3: S3Server | None = None) -> dict[str, Any]:
    """The end_to_end figure for one size: each stage the best of `repeats` runs."""
    runs = [end_to_end_in_child(n, s3) for _ in range(repeats)]
    best = {
        key: round(min(run[key] for run in runs), 3) for key in ("total_s", "upstream_s", *STAGES)
    }
    shards = runs[0]["shards"]
    figure: dict[str, Any] = {
        "name": "end_to_end",
        "n": n,
        "ours_s": best["total_s"],
        "baseline_s": None,
        "ratio": None,
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "stages_s": {stage.removesuffix("_s"): best[stage] for stage in STAGES},
        "stage_peak_rss_mb": {
            stage: max(run["stage_peak_rss_mb"][stage] for run in runs)
            for stage in runs[0]["stage_peak_rss_mb"]
        },
        "upstream_s": best["upstream_s"],
        "shards": shards,
        "requests_mb": runs[0]["requests_mb"],
        "server_peak_rss_mb": max(run["server_peak_rss_mb"] or 0 for run in runs),
        "repeats": repeats,
        "target": f"shards >= {SHARDS}",
        "met": shards >= SHARDS,
    }
    wait_n, wait_s = BATCH_WAIT_TARGET
    if n == wait_n:
        figure["target"] += f" and batch_wait_s <= {wait_s:g}"
        figure["met"] = figure["met"] and best["batch_wait_s"] <= wait_s
    if s3 is None:
        return figure
    objects = max(run["objects_written"] for run in runs)
    max_objects = MAX_OBJECTS_PER_SHARD * shards + MAX_OTHER_OBJECTS
    return {
        **figure,
        "storage": "s3",
        "objects_written": objects,
        "objects_by_folder": runs[0]["objects_by_folder"],
        "objects_per_request": round(objects / n, 6),
        "s3_requests": max(run["s3_requests"] for run in runs),
        "s3_requests_by_kind": runs[0]["s3_requests_by_kind"],
        "scratch_left": max((run["scratch_left"] for run in runs), key=len),
        "target": f"{figure['target']} and objects_written <= {max_objects}",
        "met": figure["met"] and objects <= max_objects,
    }


def with_growth(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """The large figure, with each stage's growth over the small one and the linearity target."""
    scale = large["n"] / small["n"]
    growth = {
        stage: round(large["stages_s"][stage] / small["stages_s"][stage], 2)
        if small["stages_s"][stage] > 0
        else None
        for stage in large["stages_s"]
    }
    limit = MAX_GROWTH * scale / 10
    linear = all(value is None or value <= limit for value in growth.values())
    return {
        **large,
        "growth_vs_n": {"from_n": small["n"], "input_x": scale, "stages_x": growth},
        "total_growth_x": round(large["ours_s"] / small["ours_s"], 2),
        "target": f"{large['target']} and no stage grows over {limit:g}x for {scale:g}x input",
        "met": large["met"] and linear,
    }


def start_s3(root: Path) -> S3Server:
    """The S3 server for the S3 figures (imported here: the local runs never load boto3)."""
    if str(ROOT) not in sys.path:  # `tests.services` when run as `python benchmarks/...`
        sys.path.insert(0, str(ROOT))
    from tests.services.s3 import S3Server

    return S3Server.start(root)


def main() -> None:
    """Run the figures the command line names; both by default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", choices=("sensor_tick", "end_to_end"), action="append")
    parser.add_argument("--n", type=int, action="append", help="end_to_end sizes")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument(
        "--storage",
        choices=STORAGES,
        action="append",
        help="end_to_end's storage: local disk (default) or an S3 server started here; "
        "give it twice for both",
    )
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    figures = args.figure or ["sensor_tick", "end_to_end"]
    storages = list(dict.fromkeys(args.storage or ["local"]))
    if "sensor_tick" in figures:
        large = bench_sensor_tick(IN_FLIGHT_SIZES[0], args.repeats)
        emit(large)
        small = bench_sensor_tick(IN_FLIGHT_SIZES[1], args.repeats)
        emit(small | {"growth": round(large["ours_s"] / small["ours_s"], 2)})
    if "end_to_end" in figures:
        sizes = args.n or list(END_TO_END_SIZES)
        if args.raw:
            for n in sizes:
                emit(end_to_end_run(n, storages[0]))
            return
        for storage in storages:
            with tempfile.TemporaryDirectory() as tmp:
                s3 = start_s3(Path(tmp) / "s3") if storage == "s3" else None
                try:
                    previous: dict[str, Any] | None = None
                    for n in sizes:
                        figure = bench_end_to_end(n, args.repeats, s3)
                        if previous is not None and n > previous["n"]:
                            figure = with_growth(previous, figure)
                        emit(figure)
                        previous = figure
                finally:
                    if s3 is not None:
                        s3.stop()


if __name__ == "__main__":
    main()
