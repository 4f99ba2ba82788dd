"""Core-layer figures against the obvious baselines: one JSON object per line.

- `build_dataframe`: n chat requests rendered from a polars DataFrame by a RequestTemplate into
  validated shard files (`shard_template_frame`: polars renders each shard's lines straight into
  its file). Baseline: a loop over the rows writing the same requests with `json.dumps` into the
  same shard layout (50,000 lines a file). Parsed line by line, the two sets of files must be
  equal (`equal`).
- `build_iterator`: n request dicts from a generator, validated and streamed into shards
  (`shard_requests`). Baseline: a `json.dumps` loop into one file, without validation.
- `parse_output`: n chat-completion output lines parsed into the typed output frame
  (`parse_batch_file`). Baseline: a `json.loads` loop building the same frame; the frames must be
  equal. `file_mb` is the file's size.
- `validate_file`: an n-line request JSONL checked with every rule (`validate_jsonl_file`).
  Baseline: a `json.loads` loop with the same checks (except the duplicate-key rule, which would
  only slow it down); both must find the same requests, bytes and models.
- `request_cache`: n distinct chat requests (the `build_dataframe` rows, each review text tagged
  with its id so that no two bodies are equal), sharded, and planned twice as a pipeline's two
  runs do: `miss_s` is the first run (`plan_requests` on an empty cache: every line keyed, the
  keys kept per shard, every request priced and written to new shards), then an answer for
  every request is stored (one Parquet segment); ours is the re-run (all n hits, no shard
  written). Baseline: rendering and sharding the same n requests (`build_dataframe`'s ours).
  `keys_s` is keying every line anew (what a changed shard costs); `equal` says the re-run
  answered all n from the cache and the baseline wrote n requests.

Each stage runs in a fresh process: data generated into a temporary folder (deleted after), then
on the same data the baseline `--reps` times and ours `--reps` times (the best time kept).
`peak_rss_mb` is the growth of resident memory over the run of ours (the high-water mark is reset
before each run), `baseline_peak_rss_mb` the same for the baseline. Unless `--no-scale`, each stage
runs again at n/10: `growth` = ours_s(n) / ours_s(n/10) shows time grows about linearly.
The first run's output of each side is kept for the comparison, on disk and out of the page
cache (`drop_from_memory`); the others' are deleted.

Usage: python benchmarks/core_bench.py [--n 1000000] [--reps 3] [--only NAME ...] [--no-scale]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
from upath import UPath

from batch_assets.core.costs import DEFAULT_PRICES
from batch_assets.core.limits import DEFAULT_LIMITS
from batch_assets.core.output_parsing import RESULT_SCHEMA, parse_batch_file
from batch_assets.core.request_cache import RequestCache
from batch_assets.core.request_plan import plan_requests, shard_url_keys
from batch_assets.core.request_template import RequestTemplate
from batch_assets.core.request_validation import validate_jsonl_file
from batch_assets.core.sharding import (
    shard_file_name,
    shard_requests,
    shard_template_frame,
)

CHAT = "/v1/chat/completions"
SHARD_LINES = 50_000
MAX_LINE_BYTES = 200 * 1024 * 1024 - 1
TARGETS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "build_dataframe": (
        "ratio >= 12 and peak_rss_mb < 250",
        lambda r: r["ratio"] >= 12 and r["peak_rss_mb"] < 250,
    ),
    "build_iterator": (
        "ratio_ascii >= 2.5 and peak_rss_mb < 100",
        lambda r: r["ratio_ascii"] >= 2.5 and r["peak_rss_mb"] < 100,
    ),
    "parse_output": (
        "ratio >= 7 and peak_rss_mb < file_mb",
        lambda r: r["ratio"] >= 7 and r["peak_rss_mb"] < r["file_mb"],
    ),
    "validate_file": ("ratio >= 6", lambda r: r["ratio"] >= 6),
    # "about as long as rendering them": within three times the time to render and shard them
    "request_cache": ("ours_s <= 3 * baseline_s", lambda r: r["ours_s"] <= 3 * r["baseline_s"]),
}
MAX_GROWTH = 13.0  # time at n over time at n/10: about 10 when linear, with room for noise
VOCABULARY = (
    "the tent kept us warm and dry on a night that dropped below freezing these boots are "
    "great for long hikes but the laces wore out after a month zipper stuck twice would buy "
    "again sizing runs small café naïve 日本語 😀 über"
)
WORDS = VOCABULARY.split()
REVIEW_TEMPLATE = RequestTemplate(
    endpoint=CHAT,
    model="gpt-4o-mini",
    system_prompt="You label customer reviews of outdoor gear.",
    user_template="Product: {product_name}\nRating: {rating}/5\nReview: {review_text}",
    params={"temperature": 0, "max_tokens": 200},
    custom_id_column="review_id",
)


# --- data -------------------------------------------------------------------------------------


def texts(count: int, seed: int) -> list[str]:
    """Review-like texts: mostly plain words, some quotes, line breaks, tabs and non-ASCII."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randrange(8, 40))]
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), '"really"')
        if rng.random() < 0.1:
            words.insert(rng.randrange(len(words)), "\n")
        if rng.random() < 0.02:
            words.insert(rng.randrange(len(words)), "\t\\")
        out.append(" ".join(words))
    return out


def pick(pool: list[str], n: int, name: str) -> pl.Series:
    """n values drawn from `pool` in a fixed, scattered order."""
    index = (pl.int_range(n, eager=True, dtype=pl.Int64) * 7919) % len(pool)
    return pl.Series(name, pool).gather(index)


def ids(prefix: str, n: int) -> pl.Series:
    """Unique ids: prefix and a zero-padded number."""
    return prefix + pl.int_range(n, eager=True).cast(pl.String).str.zfill(7)


def review_frame(n: int) -> pl.DataFrame:
    """The DataFrame the template renders: id, product, rating, review text."""
    products = [f"{kind} {i}" for i, kind in enumerate(["Tent", "Boots", "Jacket", "Stove"] * 12)]
    return pl.DataFrame(
        [
            ids("R-", n).alias("review_id"),
            pick(products, n, "product_name"),
            (pl.int_range(n, eager=True) % 5 + 1).alias("rating"),
            pick(texts(4096, 1), n, "review_text"),
        ]
    )


def request_dicts(n: int) -> Iterator[dict[str, Any]]:
    """Request dicts as a generator would yield them."""
    pool = texts(4096, 2)
    for i in range(n):
        yield {
            "custom_id": f"req-{i:07d}",
            "method": "POST",
            "url": CHAT,
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You classify reviews."},
                    {"role": "user", "content": pool[i % 4096]},
                ],
                "temperature": 0.0,
                "max_tokens": 64,
            },
        }


def write_lines(path: Path, lines: pl.Series) -> None:
    """Write one line per value."""
    lines.to_frame().write_csv(path, include_header=False, quote_style="never")


def write_request_file(path: Path, n: int) -> None:
    """n chat requests as JSONL, the way `json.dumps` writes them."""
    contents = pl.Series([json.dumps(text, ensure_ascii=False) for text in texts(4096, 3)])
    head = '{"custom_id": "'
    middle = (
        '", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", '
        '"messages": [{"role": "system", "content": "You classify reviews."}, '
        '{"role": "user", "content": '
    )
    tail = '}], "temperature": 0.0, "max_tokens": 64}}'
    lines = pl.concat_str(
        [
            pl.lit(head),
            ids("req-", n),
            pl.lit(middle),
            pick(contents.to_list(), n, "c"),
            pl.lit(tail),
        ]
    )
    write_lines(path, pl.select(lines).to_series())


def write_output_file(path: Path, n: int) -> None:
    """n chat-completion output lines shaped like the Batch API's, as JSONL."""
    answers = [
        json.dumps(json.dumps({"sentiment": s, "topics": t.split()[:3]}), ensure_ascii=False)
        for s, t in zip(["positive", "neutral", "negative"] * 1366, texts(4096, 4), strict=False)
    ]
    number = pl.int_range(n, eager=True)
    hex_id = number.cast(pl.String).str.zfill(24)
    lines = pl.concat_str(
        [
            pl.lit('{"id": "batch_req_'),
            hex_id,
            pl.lit('", "custom_id": "'),
            ids("req-", n),
            pl.lit('", "response": {"status_code": 200, "request_id": "req_'),
            hex_id,
            pl.lit('", "body": {"id": "chatcmpl-'),
            hex_id,
            pl.lit(
                '", "object": "chat.completion", "created": 1711652795, '
                '"model": "gpt-4o-mini-2024-07-18", "choices": [{"index": 0, "message": '
                '{"role": "assistant", "content": '
            ),
            pick(answers, n, "a"),
            pl.lit(
                ', "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}'
                '], "usage": {"prompt_tokens": '
            ),
            (number % 300 + 20).cast(pl.String),
            pl.lit(', "completion_tokens": '),
            (number % 40 + 5).cast(pl.String),
            pl.lit(', "total_tokens": '),
            (number % 300 + number % 40 + 25).cast(pl.String),
            pl.lit(
                ', "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}, '
                '"completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, '
                '"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}, '
                '"service_tier": "default", "system_fingerprint": "fp_44709d6fcb"}}, "error": null}'
            ),
        ]
    )
    write_lines(path, pl.select(lines).to_series())


# --- baselines --------------------------------------------------------------------------------


def baseline_build_dataframe(df: pl.DataFrame, template: RequestTemplate, out: Path) -> None:
    """The obvious loop: format each row, build the request dict, json.dumps it."""
    out.mkdir(parents=True)
    stream = None
    system = template.system_prompt
    for index, row in enumerate(df.iter_rows(named=True)):
        if index % SHARD_LINES == 0:
            if stream is not None:
                stream.close()
            stream = (out / shard_file_name("shard", index // SHARD_LINES)).open("w")
        request = {
            "custom_id": row[template.custom_id_column],
            "method": "POST",
            "url": template.endpoint,
            "body": {
                "model": template.model,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": template.user_template.format(**row)},
                ],
                **template.params,
            },
        }
        stream.write(json.dumps(request, ensure_ascii=False) + "\n")
    if stream is not None:
        stream.close()


def baseline_build_iterator(n: int, out: Path, ensure_ascii: bool = False) -> None:
    """The obvious loop: json.dumps each dict into one file, no validation."""
    out.mkdir(parents=True)
    with (out / "requests.jsonl").open("w") as stream:
        for request in request_dicts(n):
            stream.write(json.dumps(request, ensure_ascii=ensure_ascii) + "\n")


def baseline_parse_output(path: Path, batch_id: str) -> pl.DataFrame:
    """The obvious loop: json.loads each line, walk the dicts, build the frame from rows."""

    def first(*values: Any) -> Any:
        return next((value for value in values if value is not None), None)

    def joined(body: dict[str, Any], kind: str, key: str) -> str | None:
        parts = [
            part.get(key)
            for item in body.get("output") or []
            for part in (item or {}).get("content") or []
            if part and part.get("type") == kind and part.get(key) is not None
        ]
        return "".join(parts) if parts else None

    rows = []
    with path.open("rb") as stream:
        for raw in stream:
            if not raw.strip():
                continue
            item = json.loads(raw)
            response = item.get("response") or {}
            body = response.get("body") or {}
            choice = (body.get("choices") or [None])[0] or {}
            message = choice.get("message") or {}
            usage = body.get("usage") or {}
            error = item.get("error") or {}
            body_error = body.get("error") or {}
            data = body.get("data") or [None]
            rows.append(
                {
                    "custom_id": item.get("custom_id"),
                    "batch_id": batch_id,
                    "batch_request_id": item.get("id"),
                    "request_id": response.get("request_id"),
                    "status_code": response.get("status_code"),
                    "model": body.get("model"),
                    "answer": first(
                        message.get("content"),
                        choice.get("text"),
                        joined(body, "output_text", "text"),
                    ),
                    "refusal": first(message.get("refusal"), joined(body, "refusal", "refusal")),
                    "embedding": (data[0] or {}).get("embedding"),
                    "finish_reason": first(
                        choice.get("finish_reason"),
                        (body.get("incomplete_details") or {}).get("reason"),
                        body.get("status"),
                    ),
                    "input_tokens": first(usage.get("prompt_tokens"), usage.get("input_tokens")),
                    "output_tokens": first(
                        usage.get("completion_tokens"), usage.get("output_tokens")
                    ),
                    "total_tokens": usage.get("total_tokens"),
                    "cached_tokens": first(
                        (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
                        (usage.get("input_tokens_details") or {}).get("cached_tokens"),
                    ),
                    "reasoning_tokens": first(
                        (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
                        (usage.get("output_tokens_details") or {}).get("reasoning_tokens"),
                    ),
                    "error_code": first(error.get("code"), body_error.get("code")),
                    "error_type": body_error.get("type"),
                    "error_message": first(error.get("message"), body_error.get("message")),
                }
            )
    return pl.DataFrame(rows, schema=RESULT_SCHEMA)


def baseline_validate_file(path: Path, endpoint: str) -> dict[str, Any]:
    """The obvious loop: json.loads each line and check it by hand."""
    seen: set[str] = set()
    models: dict[str | None, int] = {}
    n_bytes = 0
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            line = raw.rstrip(b"\r\n")
            if len(line) + 1 > MAX_LINE_BYTES or not line.strip():
                raise ValueError(f"line {number}: too large or blank")
            request = json.loads(line, parse_constant=float)
            if not isinstance(request, dict):
                raise ValueError(f"line {number}: not an object")
            custom_id = request.get("custom_id")
            body = request.get("body")
            if not isinstance(custom_id, str) or not custom_id or custom_id in seen:
                raise ValueError(f"line {number}: bad custom_id")
            if request.get("method") != "POST" or request.get("url") != endpoint:
                raise ValueError(f"line {number}: bad method or url")
            if not isinstance(body, dict):
                raise ValueError(f"line {number}: bad body")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise ValueError(f"line {number}: bad model")
            seen.add(custom_id)
            models[model] = models.get(model, 0) + 1
            n_bytes += len(line) + 1
    return {"n_requests": len(seen), "n_bytes": n_bytes, "models": models}


# --- checks -----------------------------------------------------------------------------------


def same_lines(ours: list[Path], baseline: list[Path]) -> bool:
    """Whether two sets of JSONL files hold equal requests, line by line in order."""
    decoder = msgspec.json.Decoder()
    ours_lines = pl.concat([pl.read_lines(path)["line"] for path in ours])
    base_lines = pl.concat([pl.read_lines(path)["line"] for path in baseline])
    if ours_lines.len() != base_lines.len():
        return False
    differ = (ours_lines != base_lines).arg_true().to_list()  # parse where the bytes differ
    return all(decoder.decode(ours_lines[i]) == decoder.decode(base_lines[i]) for i in differ)


# --- running ----------------------------------------------------------------------------------


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def drop_from_memory(out: Path) -> None:
    """Write an output kept for the comparison to disk and drop it from the page cache.

    Otherwise the page cache grows by each kept output, and the next runs write into memory the
    guest has not used yet: on this project's VMs that cost up to 1.5 s of system time per
    360 MB written, in whichever run came next (pages that were freed cost nothing again).
    """
    os.sync()
    for path in out.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, peak RSS growth in MB, result) of one run."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    before = _status_mb("VmRSS:")
    start = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - start
    return elapsed, _status_mb("VmHWM:") - before, result


@dataclass
class Stage:
    """What one figure runs: ours, the baseline (and more baselines), and how to compare them."""

    ours: Callable[[Path], Any]
    baseline: Callable[[Path], Any]
    same: Callable[[Any, Any, Path, Path], bool]  # (our result, baseline's, our out, baseline's)
    others: dict[str, Callable[[Path], Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def same_files(ours: Any, baseline: Any, ours_out: Path, base_out: Path) -> bool:
    """Whether the two output folders hold equal requests, line by line."""
    return same_lines(sorted(ours_out.glob("*.jsonl")), sorted(base_out.glob("*.jsonl")))


def same_results(ours: Any, baseline: Any, ours_out: Path, base_out: Path) -> bool:
    """Whether the two results are equal."""
    if isinstance(ours, pl.DataFrame):
        return ours.equals(baseline)
    return bool(ours == baseline)


def build_dataframe_stage(n: int, folder: Path) -> Stage:
    """Render and shard n rows of a review DataFrame."""
    df = review_frame(n)
    template = REVIEW_TEMPLATE

    return Stage(
        lambda out: shard_template_frame(df, template, out),
        lambda out: baseline_build_dataframe(df, template, out),
        same_files,
    )


def build_iterator_stage(n: int, folder: Path) -> Stage:
    """Stream n request dicts into shards."""
    return Stage(
        lambda out: shard_requests(request_dicts(n), out, endpoint=CHAT),
        lambda out: baseline_build_iterator(n, out),
        same_files,
        # json.dumps's defaults escape non-ASCII: other bytes than ours, shown for comparison
        others={"ascii": lambda out: baseline_build_iterator(n, out, ensure_ascii=True)},
    )


def parse_output_stage(n: int, folder: Path) -> Stage:
    """Parse an output file of n chat completions."""
    path = folder / "output.jsonl"
    write_output_file(path, n)
    return Stage(
        lambda out: parse_batch_file(path, batch_id="batch_1"),
        lambda out: baseline_parse_output(path, "batch_1"),
        same_results,
        extra={"file_mb": round(path.stat().st_size / 1e6, 1)},
    )


def validate_file_stage(n: int, folder: Path) -> Stage:
    """Validate a request file of n lines."""
    path = folder / "requests.jsonl"
    write_request_file(path, n)

    def ours(out: Path) -> Any:
        summary = validate_jsonl_file(path, endpoint=CHAT)
        return {
            "n_requests": summary.n_requests,
            "n_bytes": summary.n_bytes,
            "models": summary.models,
        }

    return Stage(
        ours,
        lambda out: baseline_validate_file(path, CHAT),
        same_results,
        extra={"file_mb": round(path.stat().st_size / 1e6, 1)},
    )


def answered_frame(keys: pl.DataFrame) -> pl.DataFrame:
    """A short answer (status 200, RESULT_SCHEMA columns) for every custom_id of `keys`."""
    number = pl.int_range(keys.height, dtype=pl.Int64)
    given = {
        "custom_id": pl.col("custom_id"),
        "status_code": pl.lit(200, dtype=pl.Int32),
        "model": pl.lit("gpt-4o-mini"),
        "answer": pl.lit('{"sentiment": "positive"}'),
        "input_tokens": number % 300 + 20,
        "output_tokens": number % 40 + 5,
    }
    return keys.select(
        given.get(name, pl.lit(None, dtype=dtype)).cast(dtype).alias(name)
        for name, dtype in RESULT_SCHEMA.items()
    )


def request_cache_stage(n: int, folder: Path) -> Stage:
    """Look n sharded requests up in a cache that answers every one of them."""
    template = REVIEW_TEMPLATE
    # review_frame repeats its texts: tag each with its id, so that the n requests (and the
    # cache's entries) are n distinct ones, not the frame's 61,440 distinct bodies
    df = review_frame(n).with_columns(
        pl.concat_str(pl.col("review_text"), pl.lit(" #"), pl.col("review_id"))
    )

    def render(out: Path) -> Any:
        return shard_template_frame(df, template, out)

    shards = render(folder / "input")
    cache = RequestCache(UPath(folder / "cache"))

    def plan(out: Path) -> Any:
        return plan_requests(
            shards,
            UPath(out),
            endpoint=template.endpoint,
            limits=DEFAULT_LIMITS,
            cache=cache,
            prices=DEFAULT_PRICES,
        )

    # The first run of the pipeline: every request a miss (its keys worked out and kept by
    # shard), then every answer stored, as the download step does.
    miss_s, miss_peak, missed = measure(lambda: plan(folder / "miss"))
    miss_submitted = missed.submitted if missed.cache_hits == 0 else -1
    del missed
    shutil.rmtree(folder / "miss", ignore_errors=True)
    keys_s, _, keys = measure(
        lambda: pl.concat([shard_url_keys(shard.url, shard.endpoint) for shard in shards])
    )
    entries = cache.store(answered_frame(keys), keys, "bench")
    del keys
    extra: dict[str, Any] = {
        "cache_entries": entries,
        "miss_s": round(miss_s, 3),
        "miss_peak_rss_mb": round(miss_peak, 1),
        "miss_submitted": miss_submitted,
        "keys_s": round(keys_s, 3),  # keying every line anew (what a changed shard costs)
    }

    def same(ours: Any, baseline: Any, ours_out: Path, base_out: Path) -> bool:
        extra["hits"] = ours.cache_hits
        written = sum(shard.n_requests for shard in baseline)
        return ours.cache_hits == n and ours.shards == () and written == n == miss_submitted

    return Stage(plan, render, same, extra=extra)


STAGES: dict[str, Callable[[int, Path], Stage]] = {
    "build_dataframe": build_dataframe_stage,
    "build_iterator": build_iterator_stage,
    "parse_output": parse_output_stage,
    "validate_file": validate_file_stage,
    "request_cache": request_cache_stage,
}


def run_stage(name: str, n: int, work: str, reps: int) -> dict[str, Any]:
    """Generate the data; run the baseline `reps` times, then ours; the figures (in a child)."""
    folder = Path(work)
    folder.mkdir(parents=True)
    stage = STAGES[name](n, folder)
    sides = {"baseline": stage.baseline}
    sides |= {f"baseline_{key}": run for key, run in stage.others.items()}
    sides["ours"] = stage.ours
    times: dict[str, list[float]] = {side: [] for side in sides}
    peaks: dict[str, list[float]] = {side: [] for side in sides}
    results: dict[str, Any] = {}
    for side, run in sides.items():
        for rep in range(reps):
            out = folder / f"{side}-{rep}"
            elapsed, peak, result = measure(lambda run=run, out=out: run(out))
            times[side].append(elapsed)
            peaks[side].append(peak)
            if rep == 0:  # kept for the comparison
                results[side] = result
                if out.exists():
                    drop_from_memory(out)
            else:
                shutil.rmtree(out, ignore_errors=True)
            del result
    ours_out, base_out = folder / "ours-0", folder / "baseline-0"
    equal = stage.same(results["ours"], results["baseline"], ours_out, base_out)
    if ours_out.exists():
        files = ours_out.glob("*.jsonl")
        stage.extra["mb"] = round(sum(file.stat().st_size for file in files) / 1e6, 1)
    del results
    ours_s, baseline_s = min(times["ours"]), min(times["baseline"])
    figures = {
        "name": name,
        "n": n,
        "ours_s": round(ours_s, 3),
        "baseline_s": round(baseline_s, 3),
        "ratio": round(baseline_s / ours_s, 2),
        "peak_rss_mb": round(max(peaks["ours"]), 1),
        "baseline_peak_rss_mb": round(max(peaks["baseline"]), 1),
    }
    for key in stage.others:
        other_s = min(times[f"baseline_{key}"])
        figures |= {
            f"baseline_{key}_s": round(other_s, 3),
            f"ratio_{key}": round(other_s / ours_s, 2),
        }
    shutil.rmtree(folder, ignore_errors=True)
    return figures | stage.extra | {"equal": equal}


def in_fresh_process(name: str, n: int, work: Path, reps: int) -> dict[str, Any]:
    """run_stage in a new interpreter, so that no stage's memory or caches affect another."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_stage, (name, n, str(work), reps))


def main(argv: list[str] | None = None) -> int:
    """Run the stages; print one JSON object per line; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="requests or lines per stage")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per side (best kept)")
    parser.add_argument("--only", nargs="+", choices=list(TARGETS), help="run these stages only")
    parser.add_argument("--no-scale", action="store_true", help="skip the n/10 runs")
    args = parser.parse_args(argv)
    all_met = True
    with tempfile.TemporaryDirectory(prefix="core_bench_") as root:
        for name in args.only or list(TARGETS):
            target, met = TARGETS[name]
            result = in_fresh_process(name, args.n, Path(root) / f"{name}-{args.n}", args.reps)
            result |= {"target": target, "met": bool(met(result)) and result["equal"]}
            print(json.dumps(result), flush=True)
            all_met &= result["met"]
            if args.no_scale or args.n < 10:
                continue
            small = in_fresh_process(name, args.n // 10, Path(root) / f"{name}-small", args.reps)
            growth = result["ours_s"] / small["ours_s"]
            small |= {
                "growth": round(growth, 2),
                "target": f"growth <= {MAX_GROWTH:g} (ours_s at n / at n/10; linear is 10)",
                "met": growth <= MAX_GROWTH and small["equal"],
            }
            print(json.dumps(small), flush=True)
            all_met &= small["met"]
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
