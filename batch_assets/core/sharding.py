"""Stream validated requests into shard files: one model per shard, each within the batch limits.

Every shard is written to a hidden temporary file in the output directory and renamed into
place only once the whole input has been validated, so an error leaves no shard behind and the
files of an earlier run untouched. On success, the shard files of an earlier run with the same
prefix that the new run did not overwrite are removed, so the directory holds one shard set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import polars as pl

from batch_assets.core.limits import DEFAULT_LIMITS, EMBEDDINGS, BatchLimits, check_endpoint
from batch_assets.core.request_validation import (
    CHUNK_BYTES,
    RequestValidationError,
    check_request,
    empty_input_error,
    iter_validated_file,
    iter_validated_lines,
    quick_check,
)

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_FLUSH_BYTES = 1 << 20


@dataclass(frozen=True)
class Shard:
    """One shard file, ready to upload as one batch."""

    path: Path
    endpoint: str
    model: str | None
    n_requests: int
    n_bytes: int
    sha256: str
    est_input_tokens: int
    n_embedding_inputs: int = 0


def shard_file_name(prefix: str, index: int) -> str:
    """The file name of shard `index` (0-based)."""
    return f"{prefix}-{index:05d}.jsonl"


def _sha256_of(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


class _OpenShard:
    """A shard being written to its temporary file."""

    def __init__(self, index: int, model: str | None, temp: Path) -> None:
        self.index = index
        self.model = model
        self.temp = temp
        self.stream: IO[bytes] = temp.open("wb")
        self.sha256: Future[str] | None = None
        self.n_requests = 0
        self.n_bytes = 0
        self.n_chars = 0
        self.n_inputs = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    def write_lines(self, lines: pl.Series) -> None:
        """Write lines, each followed by LF, straight from polars."""
        self.flush()
        # A one-column CSV without quoting is the lines themselves, each ended by LF.
        lines.to_frame().write_csv(self.stream, include_header=False, quote_style="never")

    def flush(self) -> None:
        if self.pending:
            self.stream.write(b"".join(self.pending))
            self.pending, self.pending_bytes = [], 0

    def close(self, hasher: ThreadPoolExecutor) -> None:
        """Close the file and start hashing it in the background (overlapping further writes)."""
        if self.sha256 is None:
            self.flush()
            self.stream.close()
            self.sha256 = hasher.submit(_sha256_of, self.temp)


class ShardWriter:
    """Place requests into shards as they come; `commit()` renames them into place."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        endpoint: str,
        limits: BatchLimits = DEFAULT_LIMITS,
        prefix: str = "shard",
    ) -> None:
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise ValueError(f"prefix must be a plain file name prefix, got {prefix!r}")
        self.out_dir = Path(out_dir)
        self.endpoint = check_endpoint(endpoint)
        self.limits = limits
        self.prefix = prefix
        self._token = secrets.token_hex(6)
        self._open: dict[str | None, _OpenShard] = {}
        self._all: list[_OpenShard] = []
        self._embeddings = endpoint == EMBEDDINGS
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-hash")
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def _new_shard(self, model: str | None) -> _OpenShard:
        index = len(self._all)
        temp = self.out_dir / f".{shard_file_name(self.prefix, index)}.{self._token}.tmp"
        shard = _OpenShard(index, model, temp)
        self._all.append(shard)
        self._open[model] = shard
        return shard

    def _room(self, shard: _OpenShard) -> tuple[int, int, int]:
        limits = self.limits
        return (
            limits.max_requests - shard.n_requests,
            limits.max_bytes - shard.n_bytes,
            limits.max_embedding_inputs - shard.n_inputs,
        )

    def add_line(self, model: str | None, line: bytes, n_chars: int, inputs: int = 0) -> None:
        """Add one request line (UTF-8, no line end); the caller has validated it."""
        size = len(line) + 1
        shard = self._open.get(model)
        if shard is None:
            shard = self._new_shard(model)
        elif (
            shard.n_requests >= self.limits.max_requests
            or shard.n_bytes + size > self.limits.max_bytes
            or shard.n_inputs + inputs > self.limits.max_embedding_inputs
        ):
            shard.close(self._hasher)
            shard = self._new_shard(model)
        shard.pending.append(line)
        shard.pending.append(b"\n")
        shard.pending_bytes += size
        shard.n_requests += 1
        shard.n_bytes += size
        shard.n_chars += n_chars + 1
        shard.n_inputs += inputs
        if shard.pending_bytes >= _FLUSH_BYTES:
            shard.flush()

    def add_frame(self, frame: pl.DataFrame) -> None:
        """Add validated requests: columns line, model, n_bytes, embedding_inputs."""
        if frame.height == 0:
            return
        models = frame["model"]
        if models.n_unique() == 1:
            self._place(models[0], frame)
            return
        for (model,), group in frame.partition_by(
            "model", maintain_order=True, as_dict=True
        ).items():
            self._place(model, group)

    def _place(self, model: str | None, frame: pl.DataFrame) -> None:
        """Fill the open shard of `model`, then new ones, by cumulative sizes."""
        lines = frame["line"]
        sizes = (frame["n_bytes"] + 1).cum_sum()
        inputs = frame["embedding_inputs"].cum_sum() if self._embeddings else None
        total = frame.height
        start = 0
        while start < total:
            shard = self._open.get(model) or self._new_shard(model)
            room_requests, room_bytes, room_inputs = self._room(shard)
            base_size = sizes[start - 1] if start else 0
            count = min(room_requests, total - start)
            count = min(count, sizes.search_sorted(base_size + room_bytes, "right") - start)
            if inputs is not None:
                base_inputs = inputs[start - 1] if start else 0
                fit = inputs.search_sorted(base_inputs + room_inputs, "right") - start
                count = min(count, fit)
            if count <= 0:
                if shard.n_requests == 0:  # validation keeps every single line within limits
                    raise AssertionError("a request larger than an empty shard")
                shard.close(self._hasher)
                self._new_shard(model)
                continue
            part = lines.slice(start, count)
            shard.write_lines(part)
            shard.n_chars += int(part.str.len_chars().sum()) + count
            shard.n_requests += count
            shard.n_bytes += sizes[start + count - 1] - base_size
            if inputs is not None:
                shard.n_inputs += inputs[start + count - 1] - base_inputs
            start += count

    def commit(self) -> list[Shard]:
        """Close every shard, rename them into place, remove stale shards; return the shards."""
        if not self._all:
            raise ValueError("no request was added: nothing to commit")
        for shard in self._all:
            shard.close(self._hasher)
        digests = [shard.sha256.result() for shard in self._all if shard.sha256 is not None]
        self._hasher.shutdown()
        shards: list[Shard] = []
        for shard, digest in zip(self._all, digests, strict=True):
            final = self.out_dir / shard_file_name(self.prefix, shard.index)
            os.replace(shard.temp, final)
            shards.append(
                Shard(
                    path=final,
                    endpoint=self.endpoint,
                    model=shard.model,
                    n_requests=shard.n_requests,
                    n_bytes=shard.n_bytes,
                    sha256=digest,
                    est_input_tokens=(shard.n_chars + 3) // 4,
                    n_embedding_inputs=shard.n_inputs,
                )
            )
        self._remove_stale({shard.path.name for shard in shards})
        self._all = []
        self._open = {}
        return shards

    def _remove_stale(self, keep: set[str]) -> None:
        pattern = re.compile(rf"{re.escape(self.prefix)}-\d{{5}}\.jsonl")
        for path in self.out_dir.iterdir():
            if pattern.fullmatch(path.name) and path.name not in keep:
                path.unlink(missing_ok=True)

    def abort(self) -> None:
        """Close and delete every temporary file; touch nothing else."""
        self._hasher.shutdown(cancel_futures=True)
        for shard in self._all:
            try:
                shard.stream.close()
            finally:
                shard.temp.unlink(missing_ok=True)
        self._all = []
        self._open = {}


def _write_all(writer: ShardWriter, fill: Iterator[None]) -> list[Shard]:
    try:
        for _ in fill:
            pass
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def _frames_into(writer: ShardWriter, frames: Iterable[pl.DataFrame]) -> Iterator[None]:
    for frame in frames:
        writer.add_frame(frame)
        yield


def shard_jsonl_file(
    path: str | Path,
    out_dir: str | Path,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    prefix: str = "shard",
    source: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> list[Shard]:
    """Validate a JSONL request file and split it into shards; constant memory."""
    writer = ShardWriter(out_dir, endpoint=endpoint, limits=limits, prefix=prefix)
    frames = iter_validated_file(
        path, endpoint=endpoint, limits=limits, source=source, chunk_bytes=chunk_bytes
    )
    return _write_all(writer, _frames_into(writer, frames))


def shard_request_lines(
    lines: Iterable[str | bytes] | pl.Series,
    out_dir: str | Path,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    prefix: str = "shard",
    source: str | None = "request lines",
) -> list[Shard]:
    """Validate request lines (one JSON object each) and split them into shards."""
    writer = ShardWriter(out_dir, endpoint=endpoint, limits=limits, prefix=prefix)
    frames = iter_validated_lines(lines, endpoint=endpoint, limits=limits, source=source)
    return _write_all(writer, _frames_into(writer, frames))


def _requests_into(
    writer: ShardWriter,
    requests: Iterable[Mapping[str, Any]],
    limits: BatchLimits,
    source: str | None,
) -> Iterator[None]:
    endpoint = writer.endpoint
    seen: set[str] = set()
    encode = _ENCODER.encode
    add_line = writer.add_line
    max_line = limits.max_bytes - 1
    line = 0
    for line, request in enumerate(requests, start=1):
        quick = quick_check(request, endpoint)
        if quick is None:
            info = check_request(
                request, line=line, endpoint=endpoint, limits=limits, source=source
            )
            custom_id, model, inputs = info.custom_id, info.model, info.embedding_inputs
        else:
            (custom_id, model), inputs = quick, 0
        if custom_id in seen:
            raise RequestValidationError(
                f"{custom_id!r} appears more than once; each custom_id must be unique",
                line=line,
                field="custom_id",
                code="duplicate_custom_id",
                source=source,
            )
        seen.add(custom_id)
        try:
            text = encode(request)
            data = text.encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise RequestValidationError(
                f"cannot be written as JSON: {exc}",
                line=line,
                code="invalid_json_line",
                source=source,
            ) from None
        if len(data) > max_line:
            raise RequestValidationError(
                f"the line is {len(data) + 1:,} bytes with its line end, more than max_bytes "
                f"({limits.max_bytes:,}) allows in one batch",
                line=line,
                code="line_too_large",
                source=source,
            )
        add_line(model, data, len(text), inputs)
    if line == 0:
        raise empty_input_error(source)
    yield


def shard_requests(
    requests: Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    prefix: str = "shard",
    source: str | None = "requests",
) -> list[Shard]:
    """Validate request dicts as they come and stream them into shards; constant memory."""
    writer = ShardWriter(out_dir, endpoint=endpoint, limits=limits, prefix=prefix)
    return _write_all(writer, _requests_into(writer, requests, limits, source))


def shard_request_frame(
    frame: pl.DataFrame,
    out_dir: str | Path,
    *,
    endpoint: str,
    model: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    prefix: str = "shard",
    line_column: str = "request",
    custom_id_column: str = "custom_id",
    source: str | None = "rendered requests",
) -> list[Shard]:
    """Shard request lines built from a template (valid by construction) for one model.

    Checks what construction cannot: custom_ids unique and present, every line within max_bytes.
    """
    if frame.height == 0:
        raise empty_input_error(source)
    ids = frame[custom_id_column]
    lines = frame[line_column]
    problems = ids.is_null() | ~ids.is_first_distinct() | lines.is_null()
    n_bytes = lines.str.len_bytes().cast(pl.Int64)
    problems = problems | (n_bytes >= limits.max_bytes)
    if problems.any():
        row = int(problems.arg_true()[0])
        raise _frame_problem(ids[row], n_bytes[row], row + 1, limits, source)
    writer = ShardWriter(out_dir, endpoint=endpoint, limits=limits, prefix=prefix)
    inputs = 1 if endpoint == EMBEDDINGS else 0
    requests = pl.DataFrame(
        {
            "line": lines,
            "model": pl.repeat(model, frame.height, dtype=pl.String, eager=True),
            "n_bytes": n_bytes,
            "embedding_inputs": pl.repeat(inputs, frame.height, dtype=pl.Int64, eager=True),
        }
    )
    return _write_all(writer, _frames_into(writer, [requests]))


def _frame_problem(
    custom_id: str | None, n_bytes: int | None, line: int, limits: BatchLimits, source: str | None
) -> RequestValidationError:
    if custom_id is None:
        return RequestValidationError(
            "missing",
            line=line,
            field="custom_id",
            code="missing_required_parameter",
            source=source,
        )
    if n_bytes is None:
        return RequestValidationError("the request line is null", line=line, source=source)
    if n_bytes >= limits.max_bytes:
        return RequestValidationError(
            f"the line is {n_bytes + 1:,} bytes with its line end, more than max_bytes "
            f"({limits.max_bytes:,}) allows in one batch",
            line=line,
            code="line_too_large",
            source=source,
        )
    return RequestValidationError(
        f"{custom_id!r} appears more than once; each custom_id must be unique",
        line=line,
        field="custom_id",
        code="duplicate_custom_id",
        source=source,
    )
