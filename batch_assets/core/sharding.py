"""Stream validated requests into shard files: one model per shard, each within the batch limits.

Every shard is written to a hidden temporary file (beside its shard on local disk, in scratch under
TMPDIR for an object store), synced, and renamed or uploaded into place only once the whole input
has been validated, so an error leaves no shard behind and the files of an earlier run untouched.
On success, the shard files of an earlier run with the same prefix that the new run did not
overwrite are removed, so the directory holds one shard set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate, islice
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec
import polars as pl
from upath import UPath

from batch_assets.core.atomic import locked_temporary
from batch_assets.core.limits import DEFAULT_LIMITS, EMBEDDINGS, BatchLimits, check_endpoint
from batch_assets.core.plain_requests import PlainBatch, encode_plain
from batch_assets.core.portable_json import (
    find_unreadable,
    loads_marking_numbers,
    may_hold_long_integer,
)
from batch_assets.core.request_template import RequestTemplate, render_requests, rendered_lines
from batch_assets.core.request_validation import (
    CHUNK_BYTES,
    RequestInfo,
    RequestValidationError,
    SeenIds,
    check_readable,
    check_request,
    empty_input_error,
    iter_validated_file,
    iter_validated_lines,
)
from batch_assets.core.storage import is_local, local_path, publish, storage_location, url_of

if TYPE_CHECKING:
    from _json import make_encoder

_FLUSH_BYTES = 1 << 20
# Request dicts taken at once from an iterator. More at once keep more dicts alive, which the
# garbage collector then walks again and again (at 2,048, the whole took half as long again).
_BATCH = 64
_MAX_IDS = 1 << 16  # custom_ids kept in a list before they are recorded
_HASH_READ_BYTES = 1 << 22  # a shard is read back in pieces this large to hash it
# `_json.make_encoder` where CPython's C accelerator is there, else None (typeshed's json.encoder
# leaves this undocumented name out).
_C_MAKE_ENCODER: type[make_encoder] | None = getattr(json.encoder, "c_make_encoder", None)


def _not_serializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _chunk_encoder() -> Callable[[Any, int], Sequence[str]]:
    """Like `json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))`, in
    chunks to join, without its per-call set-up: call it as `encode(value, 0)`."""
    if _C_MAKE_ENCODER is None:  # no C accelerator (not CPython)
        encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return lambda value, _: (encoder.encode(value),)
    # No `markers`: a circular value ends in RecursionError instead of ValueError.
    return _C_MAKE_ENCODER(
        None, _not_serializable, encode_basestring, None, ":", ",", False, False, False
    )


@dataclass(frozen=True)
class Shard:
    """One shard file, ready to upload as one batch."""

    url: str
    endpoint: str
    model: str | None
    n_requests: int
    n_bytes: int
    sha256: str
    n_embedding_inputs: int = 0


def shard_file_name(prefix: str, index: int) -> str:
    """The file name of shard `index` (0-based)."""
    return f"{prefix}-{index:05d}.jsonl"


def _sha256_and_sync(path: Path) -> str:
    """The file's SHA-256, once it is on disk (so a crash after the rename cannot empty it).

    Read in pieces of _HASH_READ_BYTES: the hashing thread takes the GIL back after each read
    and each update, waiting up to a switch interval (5 ms) while the writer runs Python. With
    `hashlib.file_digest`'s 256 KiB pieces it fell behind: 0.22 s of a 2.7 s run of 1,000,000
    requests went to waiting for it at the end.
    """
    digest = hashlib.sha256()
    buffer = bytearray(_HASH_READ_BYTES)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as stream:
        while size := stream.readinto(buffer):
            digest.update(view[:size])
        os.fsync(stream.fileno())
    return digest.hexdigest()


class _OpenShard:
    """A shard being written to its temporary file."""

    def __init__(self, index: int, model: str | None, destination: Path) -> None:
        self.index = index
        self.model = model
        self.temp, lock = locked_temporary(destination)
        self._lock: int | None = lock
        self.stream: IO[bytes] | None = None
        self.exists = False
        self.sha256: Future[str] | None = None
        self.n_requests = 0
        self.n_bytes = 0
        self.n_inputs = 0
        self._buffered: list[bytes] = []
        self._buffered_bytes = 0

    def release(self) -> None:
        """Let go of the temporary's lock, once it is renamed or deleted."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _stream(self) -> IO[bytes]:
        if self.stream is None:
            self.stream = self.temp.open("ab")
            self.exists = True
        return self.stream

    def write_lines(self, lines: pl.Series) -> None:
        """Write lines, each followed by LF, straight from polars."""
        # A one-column CSV without quoting is the lines themselves, each ended by LF.
        options: dict[str, Any] = {"include_header": False, "quote_style": "never"}
        if self.exists:
            lines.to_frame().write_csv(self._stream(), **options)
        else:  # polars writes a path faster than a Python file object
            lines.to_frame().write_csv(self.temp, **options)
            self.exists = True

    def write_block(self, block: bytes) -> None:
        """Write UTF-8 lines joined by LF, and a last LF."""
        self.drain()
        stream = self._stream()
        stream.write(block)
        stream.write(b"\n")

    def write_buffered(self, data: bytes) -> None:
        """Write UTF-8 lines, each already followed by LF, a megabyte or so at once."""
        self._buffered.append(data)
        self._buffered_bytes += len(data)
        if self._buffered_bytes >= _FLUSH_BYTES:
            self.drain()

    def drain(self) -> None:
        """Write what `write_buffered` holds back."""
        if self._buffered:
            data = b"".join(self._buffered)
            self._buffered, self._buffered_bytes = [], 0
            self._stream().write(data)

    def count(self, n_requests: int, n_bytes: int, n_inputs: int) -> None:
        """Count lines written (or about to be)."""
        self.n_requests += n_requests
        self.n_bytes += n_bytes
        self.n_inputs += n_inputs

    def close(self, hasher: ThreadPoolExecutor) -> None:
        """Close the file; hash and sync it in the background (overlapping further writes)."""
        if self.sha256 is None:
            self.drain()
            self._stream().close()
            self.sha256 = hasher.submit(_sha256_and_sync, self.temp)


class ShardWriter:
    """Place requests into shards as they come; `commit()` renames them into place."""

    def __init__(
        self,
        out_dir: str | Path | UPath,
        *,
        endpoint: str,
        limits: BatchLimits = DEFAULT_LIMITS,
        prefix: str = "shard",
    ) -> None:
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise ValueError(f"prefix must be a plain file name prefix, got {prefix!r}")
        self.out_dir = storage_location(out_dir, setting="out_dir")
        # Temporaries live beside their shards on local disk, in scratch for an object store.
        self._local = is_local(self.out_dir)
        self._work_dir = (
            local_path(self.out_dir)
            if self._local
            else Path(tempfile.mkdtemp(prefix="batch_assets-shards-"))
        )
        self.endpoint = check_endpoint(endpoint)
        self.limits = limits
        self.prefix = prefix
        self._open: dict[str | None, _OpenShard] = {}
        self._all: list[_OpenShard] = []
        self._embeddings = endpoint == EMBEDDINGS
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-hash")
        self._work_dir.mkdir(parents=True, exist_ok=True)

    def _new_shard(self, model: str | None) -> _OpenShard:
        index = len(self._all)
        shard = _OpenShard(index, model, self._work_dir / shard_file_name(self.prefix, index))
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

    def fits(self, shard: _OpenShard, size: int, inputs: int, count: int = 1) -> bool:
        """Whether `count` more lines of `size` bytes in all (and `inputs`) fit in `shard`."""
        room_requests, room_bytes, room_inputs = self._room(shard)
        return room_requests >= count and room_bytes >= size and room_inputs >= inputs

    def shard_for(self, model: str | None, size: int, inputs: int = 0) -> _OpenShard:
        """The open shard of `model` if one more line of `size` bytes fits, else a new one."""
        shard = self._open.get(model)
        if shard is None:
            return self._new_shard(model)
        room_requests, room_bytes, room_inputs = self._room(shard)
        if room_requests < 1 or room_bytes < size or room_inputs < inputs:
            shard.close(self._hasher)
            return self._new_shard(model)
        return shard

    def add_written_shard(
        self,
        model: str | None,
        write: Callable[..., Any],
        n_requests: int,
        n_inputs: int,
    ) -> None:
        """Add a whole shard that `write(path, **csv options)` writes (lines, each ended by LF)."""
        shard = self._new_shard(model)
        write(shard.temp, include_header=False, quote_style="never")
        shard.exists = True
        n_bytes = shard.temp.stat().st_size
        shard.count(n_requests, n_bytes, n_inputs)
        shard.close(self._hasher)

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
            shard.n_requests += count
            shard.n_bytes += sizes[start + count - 1] - base_size
            if inputs is not None:
                shard.n_inputs += inputs[start + count - 1] - base_inputs
            start += count

    def commit(self) -> list[Shard]:
        """Close every shard, put them into place, remove stale shards; return the shards."""
        if not self._all:
            raise ValueError("no request was added: nothing to commit")
        for shard in self._all:
            shard.close(self._hasher)
        digests = [shard.sha256.result() for shard in self._all if shard.sha256 is not None]
        self._hasher.shutdown()
        shards: list[Shard] = []
        for shard, digest in zip(self._all, digests, strict=True):
            final = self.out_dir / shard_file_name(self.prefix, shard.index)
            if self._local:
                os.replace(shard.temp, local_path(final))
            else:
                publish(shard.temp, final)
                shard.temp.unlink()
            shard.release()
            shards.append(
                Shard(
                    url=url_of(final),
                    endpoint=self.endpoint,
                    model=shard.model,
                    n_requests=shard.n_requests,
                    n_bytes=shard.n_bytes,
                    sha256=digest,
                    n_embedding_inputs=shard.n_inputs,
                )
            )
        self._remove_stale({shard_file_name(self.prefix, shard.index) for shard in self._all})
        self._all = []
        self._open = {}
        self._remove_work_dir()
        return shards

    def _remove_stale(self, keep: set[str]) -> None:
        pattern = re.compile(rf"{re.escape(self.prefix)}-\d{{5}}\.jsonl")
        for path in self.out_dir.iterdir():
            if pattern.fullmatch(path.name) and path.name not in keep:
                path.unlink(missing_ok=True)

    def _remove_work_dir(self) -> None:
        if not self._local:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def abort(self) -> None:
        """Close and delete every temporary file; touch nothing else."""
        self._hasher.shutdown(cancel_futures=True)
        for shard in self._all:
            try:
                if shard.stream is not None:
                    shard.stream.close()
            finally:
                shard.temp.unlink(missing_ok=True)
                shard.release()
        self._all = []
        self._open = {}
        self._remove_work_dir()


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
    out_dir: str | Path | UPath,
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
    out_dir: str | Path | UPath,
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


def _long_integer_error(
    lines: list[bytes], first_line: int, source: str | None, block: bytes | None = None
) -> RequestValidationError | None:
    """The error for the first of these lines (written from dicts) that holds an integer beyond
    a double, if any; `first_line` is the input line of `lines[0]`, `block` the lines joined."""
    if not lines or not may_hold_long_integer(b"\n".join(lines) if block is None else block):
        return None
    for number, data in enumerate(lines, start=first_line):
        if may_hold_long_integer(data):
            request, _ = loads_marking_numbers(data.decode("utf-8"))
            try:
                check_readable(request, line=number, source=source)
            except RequestValidationError as exc:
                return exc
    return None


def _write_checked(
    shard: _OpenShard, lines: list[bytes], first_line: int, source: str | None
) -> None:
    """Write lines encoded from dicts, once none holds an integer beyond a double."""
    if lines:
        block = b"\n".join(lines)
        error = _long_integer_error(lines, first_line, source, block)
        if error is not None:
            raise error
        shard.write_block(block)


def _unwritable(request: object, exc: Exception, line: int, source: str | None) -> Exception:
    """The error for a request dict that cannot be written as JSON, naming the field if it can."""
    found = find_unreadable(request)
    if found is not None:
        detail, field = found.detail, found.path
    else:
        detail, field = f"cannot be written as JSON: {exc}", None
    return RequestValidationError(
        detail, line=line, field=field, code="invalid_json_line", source=source
    )


class _RequestStream:
    """Request dicts placed into shards in input order: plain batches whole, others one by one.

    Lines written one by one wait in `pending` (at most about _FLUSH_BYTES) until they are
    checked for integers beyond a double; custom_ids wait in `ids` until they are recorded.
    """

    def __init__(self, writer: ShardWriter, limits: BatchLimits, source: str | None) -> None:
        self.writer = writer
        self.limits = limits
        self.source = source
        self.endpoint = writer.endpoint
        self.encode = _chunk_encoder()
        self.encoder = msgspec.json.Encoder()
        self.seen = SeenIds(source)
        self.ids: list[str] = []  # custom_ids since the last flush
        self.ids_from = 1  # the line of ids[0]
        self.pending: list[bytes] = []  # lines written one by one, not yet checked
        self.pending_from = 1  # the line of pending[0]
        self.pending_bytes = 0
        self.shard: _OpenShard | None = None  # the shard `pending` belongs to
        self.line = 0  # the requests taken so far

    def _check(self, request: object) -> RequestInfo:
        return check_request(
            request, line=self.line, endpoint=self.endpoint, limits=self.limits, source=self.source
        )

    def flush(self) -> None:
        """Write the pending lines once checked, and record the custom_ids so far."""
        self._write_pending()
        self.seen.add(self.ids)
        self.ids = []
        self.ids_from = self.line + 1

    def _write_pending(self) -> None:
        if self.shard is not None:
            _write_checked(self.shard, self.pending, self.pending_from, self.source)
        self.pending, self.pending_bytes = [], 0
        self.pending_from = self.line + 1

    def add_one(self, request: object) -> None:
        """Check, encode and place one request (naming the problem if it has one)."""
        self.line += 1
        info = self._check(request)
        try:
            data = "".join(self.encode(request, 0)).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            self.ids.append(info.custom_id)
            raise _unwritable(request, exc, self.line, self.source) from None
        self.ids.append(info.custom_id)
        self._place_pending(data, info.model, info.embedding_inputs)

    def _place_pending(self, data: bytes, model: str | None, inputs: int) -> None:
        size = len(data) + 1
        max_bytes = self.limits.max_bytes
        shard = self.shard
        if size > max_bytes:
            raise _long_integer_error([data], self.line, self.source) or RequestValidationError(
                f"the line is {size:,} bytes with its line end, more than max_bytes "
                f"({max_bytes:,}) allows in one batch",
                line=self.line,
                code="line_too_large",
                source=self.source,
            )
        if shard is None or shard.model != model or not self.writer.fits(shard, size, inputs):
            if shard is not None:
                _write_checked(shard, self.pending, self.pending_from, self.source)
            shard = self.shard = self.writer.shard_for(model, size, inputs)
            self.pending, self.pending_from, self.pending_bytes = [], self.line, 0
        self.pending.append(data)
        self.pending_bytes += size
        shard.count(1, size, inputs)
        if self.pending_bytes >= _FLUSH_BYTES:
            self.flush()

    def add_plain(self, batch: PlainBatch) -> None:
        """Place a batch of valid requests (lines already checked), in order."""
        self._write_pending()
        self.line += len(batch.custom_ids)
        self.pending_from = self.line + 1
        self.ids.extend(batch.custom_ids)
        if len(self.ids) >= _MAX_IDS:
            self.seen.add(self.ids)
            self.ids = []
            self.ids_from = self.line + 1
        models = batch.models
        if models.count(models[0]) == len(models) and batch.embedding_inputs is None:
            shard = self.shard
            size = len(batch.block)
            fits = shard is not None and self.writer.fits(shard, size, 0, len(models))
            if fits and shard is not None and shard.model == models[0]:
                shard.write_buffered(batch.block)
                shard.count(len(models), size, 0)
                return
        self._place_lines(batch)

    def _place_lines(self, batch: PlainBatch) -> None:
        """Place the lines of a batch run by run of one model, as many at once as fit."""
        lines = batch.block.split(b"\n")
        ends = list(accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
        inputs = batch.embedding_inputs
        total_inputs = list(accumulate(inputs, initial=0)) if inputs is not None else None
        models = batch.models
        start = 0
        while start < len(models):
            model = models[start]
            stop = start + 1
            while stop < len(models) and models[stop] == model:
                stop += 1
            while start < stop:
                first_inputs = inputs[start] if inputs is not None else 0
                shard = self.writer.shard_for(model, ends[start + 1] - ends[start], first_inputs)
                room_requests, room_bytes, room_inputs = self.writer._room(shard)
                end = min(stop, start + room_requests)
                end = bisect_right(ends, ends[start] + room_bytes, start, end + 1) - 1
                if total_inputs is not None:
                    limit = total_inputs[start] + room_inputs
                    end = min(end, bisect_right(total_inputs, limit, start, end + 1) - 1)
                data = batch.block[ends[start] : ends[end]]
                shard.write_buffered(data)
                used = total_inputs[end] - total_inputs[start] if total_inputs is not None else 0
                shard.count(end - start, len(data), used)
                self.shard = shard
                start = end
            start = stop

    def finish(self) -> None:
        """Write what is pending; raise the first duplicate custom_id, if any."""
        if self.line == 0:
            raise empty_input_error(self.source)
        self.flush()
        self.seen.raise_first_problem()

    def fail(self, exc: RequestValidationError) -> RequestValidationError:
        """The first problem in line order: `exc`, an unchecked line before it, or a duplicate."""
        error = _long_integer_error(self.pending, self.pending_from, self.source) or exc
        if error.line is not None:
            del self.ids[error.line - self.ids_from + 1 :]
        self.seen.add(self.ids)
        self.seen.raise_first_problem(error)
        return error


def _requests_into(
    writer: ShardWriter,
    requests: Iterable[Mapping[str, Any]],
    limits: BatchLimits,
    source: str | None,
) -> Iterator[None]:
    """Validate, encode and place request dicts: in plain batches, else one by one."""
    stream = _RequestStream(writer, limits, source)
    items = iter(requests)
    try:
        while batch := list(islice(items, _BATCH)):
            plain = encode_plain(
                batch, endpoint=writer.endpoint, limits=limits, encoder=stream.encoder
            )
            if plain is None:
                for request in batch:
                    stream.add_one(request)
            else:
                stream.add_plain(plain)
        stream.finish()
    except RequestValidationError as exc:
        raise stream.fail(exc) from None
    yield


def shard_requests(
    requests: Iterable[Mapping[str, Any]],
    out_dir: str | Path | UPath,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    prefix: str = "shard",
    source: str | None = "requests",
) -> list[Shard]:
    """Validate request dicts as they come and stream them into shards; constant memory.

    Each request is written as `json.dumps(request, ensure_ascii=False, allow_nan=False,
    separators=(",", ":"))` would write it: msgspec writes whole batches of plain requests (see
    `plain_requests`), the `json` module the others, one at a time.
    """
    writer = ShardWriter(out_dir, endpoint=endpoint, limits=limits, prefix=prefix)
    return _write_all(writer, _requests_into(writer, requests, limits, source))


def checked_request_lines(
    frame: pl.DataFrame,
    endpoint: str,
    limits: BatchLimits,
    *,
    line_column: str,
    custom_id_column: str,
    source: str | None,
) -> pl.DataFrame:
    """The lines of a frame of rendered requests, with their sizes and embedding inputs, once
    their custom_ids are unique and present and every line is within max_bytes."""
    if frame.height == 0:
        raise empty_input_error(source)
    ids = frame[custom_id_column].rechunk()
    lines = frame[line_column]
    n_bytes = lines.str.len_bytes().cast(pl.Int64)
    if (
        ids.null_count()
        or lines.null_count()
        or n_bytes.max() >= limits.max_bytes  # type: ignore[operator]
        or ids.n_unique() < frame.height
    ):
        problems = ids.is_null() | ~ids.is_first_distinct() | lines.is_null()
        problems = problems | (n_bytes >= limits.max_bytes)
        row = int(problems.arg_true()[0])
        raise _frame_problem(ids[row], n_bytes[row], row + 1, limits, source)
    inputs = 1 if endpoint == EMBEDDINGS else 0
    return pl.DataFrame(
        {
            "line": lines,
            "n_bytes": n_bytes,
            "embedding_inputs": pl.repeat(inputs, frame.height, dtype=pl.Int64, eager=True),
        }
    )


def shard_request_frame(
    frame: pl.DataFrame,
    out_dir: str | Path | UPath,
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
    requests = checked_request_lines(
        frame,
        endpoint,
        limits,
        line_column=line_column,
        custom_id_column=custom_id_column,
        source=source,
    )
    writer = ShardWriter(out_dir, endpoint=endpoint, limits=limits, prefix=prefix)

    def fill() -> Iterator[None]:
        writer._place(model, requests)
        yield

    return _write_all(writer, fill())


def shard_template_frame(
    df: pl.DataFrame,
    template: RequestTemplate,
    out_dir: str | Path | UPath,
    *,
    limits: BatchLimits = DEFAULT_LIMITS,
    prefix: str = "shard",
    source: str | None = "rendered requests",
) -> list[Shard]:
    """Render a DataFrame through a template straight into shards: `shard_request_frame` of
    `render_requests(df, template)`, without holding the lines in memory.

    Shards are cut every max_requests rows (max_embedding_inputs for embeddings) when the lines'
    most possible sizes show that max_bytes cannot cut them sooner; otherwise the lines are
    rendered first and placed by `shard_request_frame`.
    """
    rendered = rendered_lines(df, template)
    rows = rendered.frame.height
    if rows == 0:
        raise empty_input_error(source)
    per_shard = limits.max_requests
    if template.endpoint == EMBEDDINGS:
        per_shard = min(per_shard, limits.max_embedding_inputs)
    sizes = (
        rendered.frame.select(
            upper=rendered.upper_bytes() + 1,
            shard=pl.int_range(rows, dtype=pl.Int64) // per_shard,
        )
        .group_by("shard", maintain_order=True)
        .agg(pl.col("upper").max().alias("longest"), pl.col("upper").sum())
    )
    if sizes["longest"].max() > limits.max_bytes or sizes["upper"].max() > limits.max_bytes:  # type: ignore[operator]
        return shard_request_frame(
            render_requests(df, template),
            out_dir,
            endpoint=template.endpoint,
            model=template.model,
            limits=limits,
            prefix=prefix,
            source=source,
        )
    writer = ShardWriter(out_dir, endpoint=template.endpoint, limits=limits, prefix=prefix)
    inputs = 1 if template.endpoint == EMBEDDINGS else 0
    lines = rendered.frame.lazy().select(rendered.line)

    def fill() -> Iterator[None]:
        for index in range(sizes.height):
            start = index * per_shard
            count = min(per_shard, rows - start)
            part = lines.slice(start, count)
            writer.add_written_shard(template.model, part.sink_csv, count, count * inputs)
            yield

    return _write_all(writer, fill())


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
