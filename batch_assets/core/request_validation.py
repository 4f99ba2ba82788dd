"""Client-side validation of Batch API request lines, with the rules the Batch API applies.

Two paths give the same answers. The fast path (`request_scan`) decodes whole chunks of lines
with a typed msgspec decoder and scans their text; any line it cannot vouch for (a failed check,
or a pattern msgspec reads differently from the `json` module) goes through the precise path, one
line at a time with `json.loads`, which names the line and the field.

Decisions: a UTF-8 byte order mark is rejected, not stripped (the Batch API reads it as invalid
JSON on line 1); CRLF line ends are accepted and written out as LF; blank lines are rejected;
`NaN` and `Infinity` are rejected (not JSON); a key given twice in the request object or its
body (`custom_id`, `method`, `url`, `body`, `body.model`, `body.input`) is rejected, since which
copy the Batch API would read is not documented. Anywhere in a line, a number beyond the range of
a double (`1e400`, a 309-digit integer) and a lone UTF-16 surrogate (`"\\ud800"`) are rejected,
naming the field: Python reads them, the Batch API and polars do not (see `portable_json`).
"""

from __future__ import annotations

import json
import mmap
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from batch_assets.core.limits import (
    DEFAULT_LIMITS,
    EMBEDDINGS,
    MODEL_OPTIONAL_ENDPOINTS,
    BatchLimits,
    check_endpoint,
)
from batch_assets.core.portable_json import (
    OutOfRangeNumber,
    find_unreadable,
    is_valid_unicode,
    loads_marking_numbers,
    may_hold_surrogate_escape,
)
from batch_assets.core.request_scan import RequestScanner, ScannedChunk
from batch_assets.core.request_scan import count_embedding_inputs as count_embedding_inputs

BOM = b"\xef\xbb\xbf"
CHUNK_BYTES = 16 * 1024 * 1024
# Validation alone (no frames of lines to hand on) reads smaller chunks, which stay in cache while
# msgspec decodes them and polars scans them.
SUMMARY_CHUNK_BYTES = 4 * 1024 * 1024
REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.String(),
    "custom_id": pl.String(),
    "model": pl.String(),
    "n_bytes": pl.Int64(),
    "embedding_inputs": pl.Int64(),
}
_WATCHED_BODY_KEYS = ("model", "input")


class RequestValidationError(ValueError):
    """A request the Batch API would reject; `line` is 1-based, `field` like 'body.model'."""

    def __init__(
        self,
        detail: str,
        *,
        line: int | None = None,
        field: str | None = None,
        code: str = "invalid_request",
        source: str | None = None,
    ) -> None:
        self.detail = detail
        self.line = line
        self.field = field
        self.code = code
        self.source = source
        parts = [source] if source else []
        if line is not None:
            parts.append(f"line {line}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(": ".join([*parts, detail]))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.detail, self.line, self.field, self.code, self.source))


def _rebuild_error(
    detail: str, line: int | None, field: str | None, code: str, source: str | None
) -> RequestValidationError:
    return RequestValidationError(detail, line=line, field=field, code=code, source=source)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What sharding needs to know about one valid request."""

    custom_id: str
    model: str | None
    embedding_inputs: int


@dataclass
class ValidationSummary:
    """What a valid input holds."""

    n_requests: int = 0
    n_bytes: int = 0
    models: dict[str | None, int] = field(default_factory=dict)
    embedding_inputs: int = 0

    def add(self, frame: pl.DataFrame) -> None:
        """Count one validated frame (columns of REQUEST_SCHEMA)."""
        models = frame.group_by("model", maintain_order=True).len().iter_rows()
        n_bytes = int(frame["n_bytes"].sum())
        self.add_counts(frame.height, n_bytes, dict(models), int(frame["embedding_inputs"].sum()))

    def add_counts(
        self, n_requests: int, n_bytes: int, models: Mapping[str | None, int], inputs: int
    ) -> None:
        """Count validated requests: their bytes without line ends, requests per model, and
        embedding inputs."""
        self.n_requests += n_requests
        self.n_bytes += n_bytes + n_requests
        self.embedding_inputs += inputs
        for model, count in models.items():
            self.models[model] = self.models.get(model, 0) + count


class _ObjectWithDuplicates(dict[str, Any]):
    """A JSON object that named some keys more than once."""

    duplicate_keys: frozenset[str] = frozenset()


def _duplicate_keys(value: object) -> frozenset[str]:
    """The keys a parsed JSON object named more than once; none for any other value."""
    return value.duplicate_keys if isinstance(value, _ObjectWithDuplicates) else frozenset()


def _object_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    duplicates: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            duplicates.add(key)
        seen.add(key)
    flagged = _ObjectWithDuplicates(obj)
    flagged.duplicate_keys = frozenset(duplicates)
    return flagged


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _describe(value: object) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 80 else value[:77] + "...")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, OutOfRangeNumber):
        return f"number {value.token[:40]}"
    return f"{_json_type(value)}"


def check_request(
    request: object,
    *,
    line: int,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = None,
) -> RequestInfo:
    """Check one parsed request (a dict) and say what sharding needs; raise on the first problem."""

    def fail(detail: str, name: str | None = None, code: str = "invalid_request") -> Exception:
        return RequestValidationError(detail, line=line, field=name, code=code, source=source)

    if not isinstance(request, Mapping):
        raise fail(f"expected a JSON object, got {_describe(request)}")
    duplicates = _duplicate_keys(request)

    def present(name: str, label: str, where: Mapping[str, Any], dups: frozenset[str]) -> Any:
        if name in dups:
            raise fail("the key appears more than once", label, "duplicate_key")
        if name not in where:
            raise fail("missing", label, "missing_required_parameter")
        return where[name]

    custom_id = present("custom_id", "custom_id", request, duplicates)
    if not isinstance(custom_id, str) or not custom_id:
        raise fail(f"expected a non-empty string, got {_describe(custom_id)}", "custom_id")
    if not is_valid_unicode(custom_id):
        raise fail("contains a lone UTF-16 surrogate, which is not valid Unicode", "custom_id")
    method = present("method", "method", request, duplicates)
    if method != "POST":
        raise fail(f"expected 'POST', got {_describe(method)}", "method")
    url = present("url", "url", request, duplicates)
    if url != endpoint:
        raise fail(f"expected {endpoint!r}, got {_describe(url)}", "url", "url_mismatch")
    body = present("body", "body", request, duplicates)
    if not isinstance(body, Mapping):
        raise fail(f"expected an object, got {_describe(body)}", "body")
    body_duplicates = _duplicate_keys(body)
    for key in _WATCHED_BODY_KEYS:
        if key in body_duplicates:
            raise fail("the key appears more than once", f"body.{key}", "duplicate_key")
    model = body.get("model")
    if model is None:
        if endpoint not in MODEL_OPTIONAL_ENDPOINTS:
            raise fail("missing", "body.model", "missing_required_parameter")
    elif not isinstance(model, str) or not model:
        raise fail(f"expected a non-empty string, got {_describe(model)}", "body.model")
    elif not is_valid_unicode(model):
        raise fail("contains a lone UTF-16 surrogate, which is not valid Unicode", "body.model")
    inputs = 0
    if endpoint == EMBEDDINGS:
        inputs = count_embedding_inputs(body.get("input"))
        if inputs > limits.max_embedding_inputs:
            raise fail(
                f"{inputs:,} embedding inputs, more than max_embedding_inputs "
                f"({limits.max_embedding_inputs:,}) allows in one batch",
                "body.input",
                "too_many_tasks",
            )
    return RequestInfo(custom_id, model, inputs)


def parse_request_line(
    raw: str | bytes,
    *,
    line: int,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = None,
) -> RequestInfo:
    """Check one JSONL line (without its line end) precisely; raise on the first problem."""

    def fail(detail: str, code: str) -> Exception:
        return RequestValidationError(detail, line=line, code=code, source=source)

    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fail(
                f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line",
                "invalid_utf8",
            ) from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise fail(
            "starts with a UTF-8 byte order mark (BOM); save the file as UTF-8 without a BOM",
            "invalid_json_line",
        )
    if not text.strip(" \t\r\n"):
        raise fail("blank line; every line must hold one request", "blank_line")
    try:
        request, out_of_range = loads_marking_numbers(
            text, object_pairs_hook=_object_hook, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise fail(f"invalid JSON: {exc.msg} at column {exc.colno}", "invalid_json_line") from None
    except (ValueError, RecursionError) as exc:
        raise fail(f"invalid JSON: {exc}", "invalid_json_line") from None
    info = check_request(request, line=line, endpoint=endpoint, limits=limits, source=source)
    if (
        out_of_range
        or may_hold_surrogate_escape(text)
        or (isinstance(raw, str) and not is_valid_unicode(text))
    ):
        check_readable(request, line=line, source=source)
    return info


def check_readable(request: object, *, line: int, source: str | None = None) -> None:
    """Raise if a request holds a number or string the Batch API cannot parse, naming the field."""
    found = find_unreadable(request)
    if found is not None:
        raise RequestValidationError(
            found.detail, line=line, field=found.path, code="invalid_json_line", source=source
        )


def _line_too_large(
    n_bytes: int, line: int, limits: BatchLimits, source: str | None, *, at_least: bool = False
) -> Exception:
    size = f"at least {n_bytes:,}" if at_least else f"{n_bytes:,}"
    return RequestValidationError(
        f"the line is {size} bytes with its line end, more than max_bytes "
        f"({limits.max_bytes:,}) allows in one batch",
        line=line,
        code="line_too_large",
        source=source,
    )


def empty_input_error(source: str | None) -> RequestValidationError:
    """The error for an input that holds no request at all."""
    return RequestValidationError(
        f"{source or 'the input'} is empty: it holds no request", code="empty_file"
    )


class _Checker:
    """The rules for one endpoint: the fast path (`RequestScanner`) and the precise path."""

    def __init__(self, endpoint: str, limits: BatchLimits, source: str | None) -> None:
        self.endpoint = check_endpoint(endpoint)
        self.limits = limits
        self.source = source
        self.scanner = RequestScanner(self.endpoint, limits)

    def error(self, detail: str, *, line: int | None = None, **kwargs: Any) -> Exception:
        return RequestValidationError(detail, line=line, source=self.source, **kwargs)

    def precise(self, raw: str | bytes, line: int) -> RequestInfo:
        """Check one line (without its line end) precisely."""
        n_bytes = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
        if n_bytes + 1 > self.limits.max_bytes:
            raise _line_too_large(n_bytes + 1, line, self.limits, self.source)
        return parse_request_line(
            raw, line=line, endpoint=self.endpoint, limits=self.limits, source=self.source
        )

    def analyze(
        self,
        data: bytes,
        first_line: int,
        *,
        with_lines: bool = True,
        following: bytes | None = None,
    ) -> tuple[_Rows, RequestValidationError | None]:
        """Validate a chunk of whole lines, each ending in LF: the valid rows before the first
        problem (with their frame of REQUEST_SCHEMA if `with_lines`), and that problem. The
        `following` chunk, if known, is scanned ahead (see `RequestScanner.scan`)."""
        scanned = self.scanner.scan(data, with_lines=with_lines, following=following)
        if scanned is None:
            frame, error = self._analyze_precisely(data, first_line)
            return _Rows.of_frame(frame), error
        error = self._recheck(scanned, first_line)
        n_rows = scanned.n_rows if error is None else (error.line or first_line) - first_line
        if with_lines:
            return _Rows.of_frame(self._frame(scanned).head(n_rows)), error
        n_bytes = scanned.n_bytes
        if n_rows < scanned.n_rows:
            n_bytes = int(scanned.lines().head(n_rows).str.len_bytes().sum())
        inputs = scanned.embedding_inputs
        whole = n_rows == scanned.n_rows
        rows = _Rows(
            pl.Series("custom_id", scanned.custom_ids[:n_rows], dtype=pl.String),
            n_bytes,
            Counter(scanned.models if whole else scanned.models[:n_rows]),
            0 if inputs is None else sum(inputs[:n_rows]),
        )
        return rows, error

    @staticmethod
    def _frame(scanned: ScannedChunk) -> pl.DataFrame:
        """The rows of a scanned chunk as a frame of REQUEST_SCHEMA."""
        lines = scanned.lines()
        inputs = scanned.embedding_inputs
        return pl.DataFrame(
            {
                "line": lines,
                "custom_id": scanned.custom_ids,
                "model": scanned.models,
                "n_bytes": lines.str.len_bytes().cast(pl.Int64),
                "embedding_inputs": [0] * scanned.n_rows if inputs is None else inputs,
            },
            schema=REQUEST_SCHEMA,
        )

    def _recheck(self, scanned: ScannedChunk, first_line: int) -> RequestValidationError | None:
        """Check the suspect rows precisely, in order; keep what they really hold, up to the first
        problem, and return that problem."""
        if not scanned.suspects:
            return None
        lines = scanned.lines()
        for row in scanned.suspects:
            try:
                info = self.precise(lines[row], first_line + row)
            except RequestValidationError as exc:
                return exc
            scanned.custom_ids[row] = info.custom_id
            scanned.models[row] = info.model
            if scanned.embedding_inputs is not None:
                scanned.embedding_inputs[row] = info.embedding_inputs
        return None

    def _analyze_precisely(
        self, data: bytes, first_line: int
    ) -> tuple[pl.DataFrame, RequestValidationError | None]:
        """The precise path for a whole chunk, line by line."""
        raws = data.split(b"\n")
        if raws and not raws[-1]:
            raws.pop()
        texts: list[str] = []
        infos: list[RequestInfo] = []
        error: RequestValidationError | None = None
        for index, raw in enumerate(raws):
            line = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                infos.append(self.precise(line, first_line + index))
            except RequestValidationError as exc:
                error = exc
                break
            texts.append(line.decode("utf-8"))
        lines = pl.Series("line", texts, dtype=pl.String)
        frame = pl.DataFrame(
            {
                "line": lines,
                "custom_id": [info.custom_id for info in infos],
                "model": [info.model for info in infos],
                "n_bytes": lines.str.len_bytes().cast(pl.Int64),
                "embedding_inputs": [info.embedding_inputs for info in infos],
            },
            schema=REQUEST_SCHEMA,
        )
        return frame, error


class SeenIds:
    """Every custom_id so far, in line order from line 1, to find duplicates."""

    def __init__(self, source: str | None) -> None:
        self._source = source
        self._ids: list[pl.Series] = []

    def add(self, ids: pl.Series | list[str]) -> None:
        """Record the custom_ids of the next lines."""
        self._ids.append(ids if isinstance(ids, pl.Series) else pl.Series(ids, dtype=pl.String))

    def raise_first_problem(self, error: RequestValidationError | None = None) -> None:
        """Raise the first duplicate custom_id, or else `error` (which comes after every id)."""
        ids = pl.concat(self._ids, rechunk=False) if self._ids else pl.Series(dtype=pl.String)
        self._ids = [ids]
        # Distinct 64-bit hashes prove distinct ids in less memory than the ids' own hash table
        # (1,000,000 ids: ~24 MB, not ~50 MB); only a collision calls for the exact look.
        if ids.hash().n_unique() < ids.len() and ids.n_unique() < ids.len():
            row = int((~ids.is_first_distinct()).arg_true()[0])
            value = ids[row]
            earlier = int((ids.head(row) == value).arg_true()[0]) + 1
            raise RequestValidationError(
                f"{value!r} appears more than once (first on line {earlier}); "
                "each custom_id must be unique",
                line=row + 1,
                field="custom_id",
                code="duplicate_custom_id",
                source=self._source,
            )
        if error is not None:
            raise error


class _ChunkReader:
    """Read a file in chunks of whole lines through mmap; `next_line` is kept by the caller.

    A line longer than max_bytes ends the chunks: raised, or if `mark_oversized` given as an
    `_Oversized` for the caller to raise once it knows the line's number (it reads ahead).
    """

    def __init__(
        self, path: Path, chunk_bytes: int, checker: _Checker, *, mark_oversized: bool = False
    ) -> None:
        self.path = path
        self.chunk_bytes = chunk_bytes
        self.checker = checker
        self.next_line = 1
        self.mark_oversized = mark_oversized

    def _too_large(self, n_bytes: int, *, at_least: bool) -> Exception:
        limits, source = self.checker.limits, self.checker.source
        return _line_too_large(n_bytes, self.next_line, limits, source, at_least=at_least)

    def __iter__(self) -> Iterator[bytes | _Oversized]:
        max_bytes = self.checker.limits.max_bytes
        with self.path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size == 0:
                return
            with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as view:
                if view[:3] == BOM:
                    end = view.find(b"\n", 0, max_bytes + 1)
                    if end < 0 and size > max_bytes + 1:
                        raise self._too_large(max_bytes + 1, at_least=True)
                    first = view[: size if end < 0 else end].removesuffix(b"\r")
                    if len(first) + 1 > max_bytes:  # a line's size is checked before its content
                        raise self._too_large(len(first) + 1, at_least=False)
                    raise self.checker.error(
                        "the file starts with a UTF-8 byte order mark (BOM); "
                        "save it as UTF-8 without a BOM",
                        line=1,
                        code="invalid_json_line",
                    )
                start = 0
                while start < size:
                    stop = min(start + self.chunk_bytes, size)
                    cut = view.rfind(b"\n", start, stop) + 1 if stop < size else size
                    if cut <= start:  # one line longer than a chunk
                        # +1: a line that fits may have a CR before its LF
                        cut = view.find(b"\n", stop, start + max_bytes + 1) + 1
                        if cut <= start:
                            if size - start <= max_bytes:
                                cut = size
                            else:
                                if not self.mark_oversized:
                                    raise self._too_large(max_bytes + 1, at_least=True)
                                yield _Oversized(max_bytes + 1)
                                return
                    chunk = view[start:cut]
                    _release(view, start, cut)
                    yield chunk if chunk.endswith(b"\n") else chunk + b"\n"
                    start = cut


@dataclass(frozen=True)
class _Oversized:
    """In place of a chunk: its first line is longer than max_bytes (at least `n_bytes`)."""

    n_bytes: int

    def error(self, line: int, checker: _Checker) -> Exception:
        """The error for that line, once its number is known."""
        return _line_too_large(self.n_bytes, line, checker.limits, checker.source, at_least=True)


def _release(view: mmap.mmap, start: int, stop: int) -> None:
    """Drop pages already read from this process's resident memory (they stay in page cache)."""
    first = start - start % mmap.PAGESIZE
    if stop - first >= mmap.PAGESIZE and hasattr(mmap, "MADV_DONTNEED"):
        view.madvise(mmap.MADV_DONTNEED, first, stop - first - (stop - first) % mmap.PAGESIZE)


@dataclass
class _Rows:
    """The valid rows of one chunk: their custom_ids, bytes without line ends, models, embedding
    inputs, and their frame of REQUEST_SCHEMA where one was made."""

    custom_ids: pl.Series
    n_bytes: int
    models: Counter[str | None]
    embedding_inputs: int
    frame: pl.DataFrame | None = None

    @staticmethod
    def of_frame(frame: pl.DataFrame) -> _Rows:
        """The rows of a frame of REQUEST_SCHEMA."""
        return _Rows(
            frame["custom_id"],
            int(frame["n_bytes"].sum()),
            Counter(frame["model"].to_list()),
            int(frame["embedding_inputs"].sum()),
            frame,
        )


def _stream_rows(
    batches: Iterable[bytes | _Oversized],
    checker: _Checker,
    reader: _ChunkReader | None = None,
    *,
    with_lines: bool = True,
) -> Iterator[_Rows]:
    """Analyze consecutive chunks of lines from line 1: each chunk's valid rows (see
    `_Checker.analyze`); raise the first problem in line order."""
    seen = SeenIds(checker.source)
    next_line = 1
    try:
        for data, following in _with_following(batches):
            if isinstance(data, _Oversized):
                raise data.error(next_line, checker)
            # Frames hold their lines: a chunk split ahead raised the peak memory by far more
            # than it saved in time, so only counting reads ahead.
            ahead = following if isinstance(following, bytes) and not with_lines else None
            rows, error = checker.analyze(data, next_line, with_lines=with_lines, following=ahead)
            seen.add(rows.custom_ids)
            if error is not None:
                seen.raise_first_problem(error)
            next_line += rows.custom_ids.len()
            if reader is not None:
                reader.next_line = next_line
            yield rows
    except RequestValidationError as exc:
        seen.raise_first_problem(exc)
        raise
    seen.raise_first_problem()
    if next_line == 1:
        raise empty_input_error(checker.source)


def _with_following(
    batches: Iterable[bytes | _Oversized],
) -> Iterator[tuple[bytes | _Oversized, bytes | _Oversized | None]]:
    """Each batch with the one after it (None after the last); a problem found while getting
    the one after is raised only once the batch before it has been handled."""
    items = iter(batches)
    current = next(items, None)
    while current is not None:
        try:
            following = next(items, None)
        except Exception:  # raised in its turn: the batch before may hold an earlier problem
            yield current, None
            raise
        yield current, following
        current = following


def _stream_frames(
    batches: Iterable[bytes | _Oversized], checker: _Checker, reader: _ChunkReader | None = None
) -> Iterator[pl.DataFrame]:
    """Frames of REQUEST_SCHEMA for consecutive chunks of lines from line 1."""
    for rows in _stream_rows(batches, checker, reader):
        assert rows.frame is not None
        yield rows.frame


def _summarize(chunks: Iterable[_Rows]) -> ValidationSummary:
    """Count the valid rows of every chunk."""
    summary = ValidationSummary()
    for rows in chunks:
        summary.add_counts(rows.custom_ids.len(), rows.n_bytes, rows.models, rows.embedding_inputs)
    return summary


def iter_validated_file(
    path: str | Path,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[pl.DataFrame]:
    """Validate a JSONL file as a stream; yield its requests as frames of REQUEST_SCHEMA.

    Raises RequestValidationError on the first problem, after yielding the frames before it
    (a duplicate custom_id is only known for sure at the end).
    """
    path = Path(path)
    checker = _Checker(endpoint, limits, source or path.name)
    reader = _ChunkReader(path, chunk_bytes, checker, mark_oversized=True)
    return _stream_frames(reader, checker, reader)


def _line_batches(
    lines: Iterable[str | bytes] | pl.Series, chunk_bytes: int, checker: _Checker
) -> Iterator[bytes]:
    """Join request lines into chunks of LF-terminated bytes; reject lines that are not one line."""
    if isinstance(lines, pl.Series):
        yield from _series_batches(lines, checker)
        return
    batch: list[bytes] = []
    size = 0
    for number, item in enumerate(lines, start=1):
        if isinstance(item, str):
            try:
                raw = item.encode("utf-8")
            except UnicodeEncodeError:
                raise checker.error(
                    "not valid Unicode (a lone UTF-16 surrogate)",
                    line=number,
                    field=_surrogate_field(item),
                    code="invalid_utf8",
                ) from None
        elif isinstance(item, bytes):
            raw = item
        else:
            raise checker.error(
                f"expected a str line, got {type(item).__name__}", line=number, code="invalid_line"
            )
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if b"\n" in raw:
            raise checker.error(
                "holds a line break; each request must be one line",
                line=number,
                code="invalid_line",
            )
        batch.append(raw)
        size += len(raw) + 1
        if size >= chunk_bytes:
            yield b"\n".join(batch) + b"\n"
            batch, size = [], 0
    if batch:
        yield b"\n".join(batch) + b"\n"


def _surrogate_field(text: str) -> str | None:
    """The field of a JSON line that holds a lone UTF-16 surrogate, if it parses."""
    try:
        found = find_unreadable(json.loads(text))
    except (ValueError, RecursionError):
        return None
    return None if found is None else found.path


def _series_batches(lines: pl.Series, checker: _Checker) -> Iterator[bytes]:
    if lines.dtype != pl.String:
        raise TypeError(f"request lines must be a String Series, got {lines.dtype}")
    lines = lines.str.strip_suffix("\n").str.strip_suffix("\r")
    bad = lines.is_null() | lines.str.contains("\n", literal=True)
    if bad.any():
        row = int(bad.arg_true()[0])
        detail = "is null" if lines[row] is None else "holds a line break"
        raise checker.error(
            f"{detail}; each request must be one line", line=row + 1, code="invalid_line"
        )
    rows = 100_000
    for start in range(0, lines.len(), rows):
        part = lines.slice(start, rows)
        yield (part + "\n").str.join("").cast(pl.Binary).item()


def iter_validated_lines(
    lines: Iterable[str | bytes] | pl.Series,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = "request lines",
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[pl.DataFrame]:
    """Validate request lines (str or bytes, an optional line end each) as a stream of frames."""
    checker = _Checker(endpoint, limits, source)
    return _stream_frames(_line_batches(lines, chunk_bytes, checker), checker)


def validate_jsonl_file(
    path: str | Path,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = None,
    chunk_bytes: int = SUMMARY_CHUNK_BYTES,
) -> ValidationSummary:
    """Validate a whole JSONL request file with constant memory; raise on the first problem."""
    path = Path(path)
    checker = _Checker(endpoint, limits, source or path.name)
    reader = _ChunkReader(path, chunk_bytes, checker, mark_oversized=True)
    return _summarize(_stream_rows(reader, checker, reader, with_lines=False))


def validate_request_lines(
    lines: Iterable[str | bytes] | pl.Series,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = "request lines",
) -> ValidationSummary:
    """Validate request lines; raise on the first problem."""
    checker = _Checker(endpoint, limits, source)
    batches = _line_batches(lines, SUMMARY_CHUNK_BYTES, checker)
    return _summarize(_stream_rows(batches, checker, with_lines=False))
