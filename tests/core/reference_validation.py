"""The polars fast path request validation used before msgspec: the reference for the property
tests (tests/core/test_request_validation_reference.py).

A copy of `batch_assets.core.request_validation` as it was (issue 15's starting point): polars
parses whole chunks of lines and vectorized expressions check them; lines it cannot vouch for go
through the same precise path (`json.loads`, one line at a time). The error type, the precise
path, the chunk reader and the line batching are shared with the module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from batch_assets.core import request_validation
from batch_assets.core.limits import (
    DEFAULT_LIMITS,
    EMBEDDINGS,
    MODEL_OPTIONAL_ENDPOINTS,
    BatchLimits,
)
from batch_assets.core.request_validation import (
    CHUNK_BYTES,
    RequestInfo,
    RequestValidationError,
    SeenIds,
    ValidationSummary,
    _ChunkReader,
    _line_batches,
    empty_input_error,
)


class _Checker(request_validation._Checker):
    """The rules for one endpoint, compiled into polars patterns and a parse schema; the
    precise path is the module's own, which issue 15 left as it was."""

    def __init__(self, endpoint: str, limits: BatchLimits, source: str | None) -> None:
        super().__init__(endpoint, limits, source)
        self.embeddings = endpoint == EMBEDDINGS
        self.model_optional = endpoint in MODEL_OPTIONAL_ENDPOINTS
        body: dict[str, pl.DataType] = {"model": pl.String()}
        keys = "custom_id|method|url|body|model"
        # Lines the polars parser may read differently from `json.loads`: a non-string value
        # where a string belongs (polars reads 5 as "5" and [1] as "[1]"), a key written with
        # \u escapes, a surrogate escape in custom_id or model, a high surrogate escape not
        # followed by another escape (polars reads a lone one as NUL; any other lone surrogate
        # and any number beyond a double fail the whole chunk), (embeddings) token arrays.
        guards = [
            r'"(?:custom_id|model)"\s*:\s*[-0-9tf\[{]',
            r'\\u[0-9A-Fa-f]{4}(?:[^"\\]|\\.)*"\s*:',
            r'"(?:custom_id|model)"\s*:\s*"(?:[^"\\]|\\.)*\\u[dD][89a-fA-F]',
            r"\\u[dD][89abAB][0-9a-fA-F]{2}(?:[^\\]|\\[^u])",
        ]
        if self.embeddings:
            body["input"] = pl.List(pl.String())
            keys += "|input"
            guards.append(r'"input"\s*:\s*\[\s*[-0-9\[]')
        self.schema: dict[str, pl.DataType] = {
            "custom_id": pl.String(),
            "method": pl.String(),
            "url": pl.String(),
            "body": pl.Struct(body),
        }
        self.guard_pattern = "|".join(guards)
        # Each watched key once, so polars (first copy wins) and `json` (last wins) agree.
        self.key_pattern = f'"(?:{keys})"\\s*:'

    def analyze(
        self, data: bytes, first_line: int
    ) -> tuple[pl.DataFrame, RequestValidationError | None]:
        """Validate a chunk of whole lines, each ending in LF; return the valid rows before the
        first problem (columns of REQUEST_SCHEMA), and that problem."""
        try:
            lines = pl.read_lines(data)
            parsed = pl.read_ndjson(data, schema=self.schema)
        except pl.exceptions.PolarsError:
            return self._analyze_precisely(data, first_line)
        if parsed.height != lines.height:  # polars skips blank lines
            return self._analyze_precisely(data, first_line)
        line = pl.col("line")
        body = pl.col("body")
        model = body.struct.field("model")
        n_bytes = line.str.len_bytes().cast(pl.Int64)
        expected_keys = 4 + model.is_not_null().cast(pl.Int64)
        if self.embeddings:
            inputs = body.struct.field("input").list.len().cast(pl.Int64).fill_null(1)
            expected_keys = expected_keys + body.struct.field("input").is_not_null()
        else:
            inputs = pl.lit(0, dtype=pl.Int64)
        model_ok = model.str.len_bytes() > 0
        if self.model_optional:
            model_ok = model_ok | model.is_null()
        ok = (
            (pl.col("custom_id").str.len_bytes() > 0)
            & (pl.col("method") == "POST")
            & (pl.col("url") == self.endpoint)
            & body.is_not_null()
            & model_ok
            & (n_bytes < self.limits.max_bytes)
            & (inputs <= self.limits.max_embedding_inputs)
            & ~line.str.contains(self.guard_pattern)
            & (line.str.count_matches(self.key_pattern) == expected_keys)
        ).fill_null(False)
        frame = pl.concat([lines, parsed], how="horizontal").select(
            line,
            pl.col("custom_id"),
            model.alias("model"),
            n_bytes.alias("n_bytes"),
            inputs.alias("embedding_inputs"),
            (~ok).alias("flagged"),
        )
        flagged = frame["flagged"]
        frame = frame.drop("flagged")
        if not flagged.any():
            return frame, None
        return self._recheck(frame, flagged.arg_true().to_list(), first_line)

    def _recheck(
        self, frame: pl.DataFrame, rows: list[int], first_line: int
    ) -> tuple[pl.DataFrame, RequestValidationError | None]:
        """Check the flagged rows precisely; keep what they really hold."""
        lines = frame["line"]
        fixed: list[int] = []
        infos: list[RequestInfo] = []
        error: RequestValidationError | None = None
        for row in rows:
            try:
                infos.append(self.precise(lines[row], first_line + row))
            except RequestValidationError as exc:
                error = exc
                break
            fixed.append(row)
        if fixed:
            frame = frame.with_columns(
                frame["custom_id"].scatter(fixed, [info.custom_id for info in infos]),
                frame["model"].scatter(fixed, [info.model for info in infos]),
                frame["embedding_inputs"].scatter(fixed, [info.embedding_inputs for info in infos]),
            )
        if error is not None and error.line is not None:
            frame = frame.head(error.line - first_line)
        return frame, error


def _stream_frames(
    batches: Iterable[bytes], checker: _Checker, reader: Any = None
) -> Iterator[pl.DataFrame]:
    """Analyze consecutive chunks of lines from line 1; raise the first problem in line order."""
    seen = SeenIds(checker.source)
    next_line = 1
    try:
        for data in batches:
            frame, error = checker.analyze(data, next_line)
            seen.add(frame["custom_id"])
            if error is not None:
                seen.raise_first_problem(error)
            next_line += frame.height
            if reader is not None:
                reader.next_line = next_line
            yield frame
    except RequestValidationError as exc:
        seen.raise_first_problem(exc)
        raise
    seen.raise_first_problem()
    if next_line == 1:
        raise empty_input_error(checker.source)


def iter_validated_file(
    path: str | Path,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[pl.DataFrame]:
    """Validate a JSONL file as a stream with the polars fast path; yield REQUEST_SCHEMA frames."""
    path = Path(path)
    checker = _Checker(endpoint, limits, source or path.name)
    reader = _ChunkReader(path, chunk_bytes, checker)  # type: ignore[arg-type]
    return _stream_frames(reader, checker, reader)


def iter_validated_lines(
    lines: Iterable[str | bytes] | pl.Series,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = "request lines",
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[pl.DataFrame]:
    """Validate request lines as a stream of frames with the polars fast path."""
    checker = _Checker(endpoint, limits, source)
    return _stream_frames(_line_batches(lines, chunk_bytes, checker), checker)  # type: ignore[arg-type]


def validate_jsonl_file(
    path: str | Path,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> ValidationSummary:
    """Validate a whole JSONL request file with the polars fast path."""
    summary = ValidationSummary()
    for frame in iter_validated_file(
        path, endpoint=endpoint, limits=limits, source=source, chunk_bytes=chunk_bytes
    ):
        summary.add(frame)
    return summary


def validate_request_lines(
    lines: Iterable[str | bytes] | pl.Series,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    source: str | None = "request lines",
) -> ValidationSummary:
    """Validate request lines with the polars fast path."""
    summary = ValidationSummary()
    for frame in iter_validated_lines(lines, endpoint=endpoint, limits=limits, source=source):
        summary.add(frame)
    return summary
