"""The fast path of request validation: msgspec reads a chunk of lines into typed requests.

A typed decoder checks what it decodes (custom_id and body.model non-empty strings, method
'POST', url the endpoint, body an object) and rejects what is not JSON (NaN, a lone surrogate
escape, a bad escape, a raw control character). It does not see everything the rules need, so
scans of the chunk's text name each line it cannot vouch for, and the precise path (`json.loads`,
one line at a time) checks those lines: a line msgspec could not read, a watched key written
twice (msgspec keeps the last copy) or with a \\u escape, a number with an exponent or with
DOUBLE_DIGITS digits in a row (msgspec skips the values it does not read without checking their
range), a line over max_bytes, too many embedding inputs. Text that is not valid UTF-8 (msgspec
does not check the strings it skips) sends the whole chunk to the precise path.

Most chunks need one regex count over their text for the line structure and the keys (see
`RequestScanner._scan_text`), run by polars in a helper thread while msgspec decodes.
"""

from __future__ import annotations

import functools
import operator
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import polars as pl

from batch_assets.core.limits import EMBEDDINGS, MODEL_OPTIONAL_ENDPOINTS, BatchLimits
from batch_assets.core.portable_json import DOUBLE_DIGITS, may_hold_long_integer

WATCHED_KEYS = ("custom_id", "method", "url", "body", "model", "input")
_ANY_WATCHED_KEY = '"(?:' + "|".join(WATCHED_KEYS) + ')"'
_ANY_WATCHED_KEY_BYTES = re.compile(_ANY_WATCHED_KEY.encode())
# A string with a \u escape followed by a colon: a key msgspec reads under its unescaped name.
_ESCAPED_KEY = r'\\u[0-9A-Fa-f]{4}(?:[^"\\]|\\.)*"\s*:'
# Every JSON number with an exponent has a digit before its 'e'; the line pattern is narrower.
_ESCAPE_OR_EXPONENT = r"\\u|[0-9][eE]"
_EXPONENT = r"[\[:,\s]-?[0-9]+(?:\.[0-9]+)?[eE]"
_LONG_DIGITS = f"[0-9]{{{DOUBLE_DIGITS}}}"
_DECODE_ERRORS = (msgspec.DecodeError, RecursionError)
_CUSTOM_ID = operator.attrgetter("custom_id")
_MODEL = operator.attrgetter("body.model")

_TextScan = tuple[bool, int, int, pl.Series | None]

NonEmptyString = Annotated[str, msgspec.Meta(min_length=1)]


def count_embedding_inputs(value: object) -> int:
    """How many inputs an embeddings `input` holds: a string or one token array counts 1."""
    if isinstance(value, list):
        if value and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
            return 1
        return len(value)
    return 1


@dataclass
class ScannedChunk:
    """What the fast path read from a chunk of lines.

    `suspects` are the rows (ascending) to check precisely: their `custom_ids`, `models` and
    `embedding_inputs` are not to be trusted. `n_bytes` counts every line without its line end.
    """

    data: bytes
    n_rows: int
    n_bytes: int
    custom_ids: list[str | None]
    models: list[str | None]
    embedding_inputs: list[int] | None
    suspects: list[int]
    split: pl.Series | None = field(default=None, repr=False)

    def lines(self) -> pl.Series:
        """Each line's text, without its line end."""
        if self.split is None:
            self.split = split_lines(self.data)
        return self.split


def split_lines(data: bytes) -> pl.Series:
    """The lines of valid UTF-8 text whose lines each end in LF, without their line ends (LF, or
    CR and LF)."""
    return pl.read_lines(data)["line"]


def _request_type(endpoint: str) -> type[msgspec.Struct]:
    """The Struct a valid request for `endpoint` decodes into (watched fields only)."""
    body_fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    if endpoint in MODEL_OPTIONAL_ENDPOINTS:
        body_fields.append(("model", NonEmptyString | None | msgspec.UnsetType, msgspec.UNSET))
    else:
        body_fields.append(("model", NonEmptyString))
    if endpoint == EMBEDDINGS:
        body_fields.append(("input", Any, msgspec.UNSET))
    body = msgspec.defstruct("Body", body_fields, gc=False)
    url: Any = Literal.__getitem__(endpoint)
    fields: list[tuple[str, Any]] = [
        ("custom_id", NonEmptyString),
        ("method", Literal["POST"]),
        ("url", url),
        ("body", body),
    ]
    return msgspec.defstruct("Request", fields, gc=False)


def _request_head_pattern(endpoint: str) -> str:
    """A regex for the head of a request written in the usual order, from its '{' up to its
    body's model (and input): see `RequestScanner._scan_text`."""
    gap = "[ \t]*"

    def key(name: str) -> str:
        return f'{gap}"{name}"{gap}:{gap}'

    string = r'"[^"\\\n]*"'
    return (
        r"\{"
        + key("custom_id")
        + string
        + f"{gap},"
        + key("method")
        + '"POST"'
        + f"{gap},"
        + key("url")
        + f'"{re.escape(endpoint)}"'
        + f"{gap},"
        + key("body")
        + r"\{(?:"
        + key("model")
        + string
        + f"(?:{gap},"
        + key("input")
        + ")?)?"
    )


class RequestScanner:
    """The fast path for one endpoint and its limits."""

    def __init__(self, endpoint: str, limits: BatchLimits) -> None:
        self.endpoint = endpoint
        self.limits = limits
        self.model_optional = endpoint in MODEL_OPTIONAL_ENDPOINTS
        self.embeddings = endpoint == EMBEDDINGS
        head = _request_head_pattern(endpoint)
        # Any head after the first line's, which starts at a line end after '}', or any watched key.
        self.heads_or_keys = rf"\}}\r?\n{head}|{_ANY_WATCHED_KEY}"
        self.first_head = re.compile(head.encode())
        decoder = msgspec.json.Decoder(_request_type(endpoint))
        self._decode = decoder.decode
        self._decode_lines = decoder.decode_lines
        self._pending: tuple[bytes, bool, Future[_TextScan]] | None = None

    def scan(
        self, data: bytes, *, with_lines: bool = False, following: bytes | None = None
    ) -> ScannedChunk | None:
        """Read whole lines, each ending in LF (splitting them into `lines` now if `with_lines`);
        None if the text is not valid UTF-8. The text scan of the `following` chunk, if given,
        starts as soon as this one's ends, to run while this process finishes this chunk."""
        text_scan = self._text_scan_of(data, with_lines)
        values = self._decode_whole(data)
        try:
            escape_or_exponent, heads, n_lines, split = text_scan.result()
        except pl.exceptions.PolarsError:
            return None
        finally:
            if following is not None:
                self._pending = (
                    following,
                    with_lines,
                    self._start_text_scan(following, with_lines),
                )
        if (
            values is not None
            and not escape_or_exponent
            and len(values) == n_lines
            and self._heads_vouch(data, n_lines, heads)
        ):
            scanned = self._scanned(data, values, [], split)
        else:
            lines = split_lines(data) if split is None else split
            values, undecoded = self._decode_each(data, lines)
            scanned = self._scanned(data, values, undecoded, lines)
            scanned.suspects.extend(self._flag_by_line(lines, undecoded, escape_or_exponent))
        if len(data) + 1 > self.limits.max_bytes:
            too_large = scanned.lines().str.len_bytes().cast(pl.Int64) + 1 > self.limits.max_bytes
            scanned.suspects.extend(too_large.arg_true().to_list())
        inputs = scanned.embedding_inputs
        if inputs is not None and max(inputs, default=0) > self.limits.max_embedding_inputs:
            scanned.suspects.extend(
                row for row, count in enumerate(inputs) if count > self.limits.max_embedding_inputs
            )
        if may_hold_long_integer(data):
            long_digits = scanned.lines().str.contains(_LONG_DIGITS)
            scanned.suspects.extend(long_digits.arg_true().to_list())
        scanned.suspects = sorted(set(scanned.suspects))
        scanned.n_bytes = len(data) - n_lines - (data.count(b"\r\n") if b"\r" in data else 0)
        return scanned

    def _scanned(
        self,
        data: bytes,
        values: list[Any],
        undecoded: list[int],
        lines: pl.Series | None = None,
    ) -> ScannedChunk:
        """The scanned chunk of these requests (None where msgspec could not read a line)."""
        if undecoded:
            custom_ids = [None if value is None else value.custom_id for value in values]
            models = [None if value is None else value.body.model for value in values]
        else:
            custom_ids = list(map(_CUSTOM_ID, values))
            models = list(map(_MODEL, values))
        if self.model_optional:
            models = [None if model is msgspec.UNSET else model for model in models]
        inputs = self._embedding_inputs(values) if self.embeddings else None
        return ScannedChunk(
            data, len(values), 0, custom_ids, models, inputs, list(undecoded), split=lines
        )

    def _decode_whole(self, data: bytes) -> list[Any] | None:
        """Every request in the chunk, if msgspec reads them all."""
        try:
            values: list[Any] = self._decode_lines(data)
        except _DECODE_ERRORS:
            return None
        return values

    def _text_scan_of(self, data: bytes, with_lines: bool) -> Future[_TextScan]:
        """The text scan of `data`: the one started by the last `scan` if it was of this chunk."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is data and pending[1] == with_lines:
            return pending[2]
        return self._start_text_scan(data, with_lines)

    def _start_text_scan(self, data: bytes, with_lines: bool) -> Future[_TextScan]:
        """Start `_scan_text` in the helper thread; return once polars runs it without the GIL.

        msgspec holds the GIL for all of a chunk's decoding: a thread that asked for the GIL
        only then would start its scan after the decoding, not alongside it.
        """
        started = threading.Event()
        scan = _text_scans().submit(self._scan_text, data, with_lines, started)
        started.wait()
        return scan

    def _scan_text(self, data: bytes, with_lines: bool, started: threading.Event) -> _TextScan:
        """Whether the text may hold a \\u escape or an exponent, how many heads and keys it holds
        (`heads_or_keys`), how many LFs, and its lines if `with_lines`; raise a PolarsError if the
        text is not valid UTF-8. Sets `started` as polars begins (see `_start_text_scan`).

        Over a chunk without a \\u escape whose requests all decoded, whose first line is a head
        holding all its keys, there are as many matches as requests after the first, plus the
        first line's keys, only if every line is one request and names no watched key twice:
        each request holds at least its 4 required keys, so one match per request after the first
        must be a head holding all of them (and model and input, if it names them at all), and
        every such head starts at a line end after '}' and at the '{' of the next line. Lines
        written otherwise make more matches and take the slower line by line checks.
        """
        try:
            text = pl.col("text").cast(pl.String)
            query = (
                pl.DataFrame({"text": [data]}, schema={"text": pl.Binary})
                .lazy()
                .select(
                    text.str.contains(_ESCAPE_OR_EXPONENT).alias("escape_or_exponent"),
                    text.str.count_matches(self.heads_or_keys).alias("heads"),
                    text.str.count_matches("\n", literal=True).alias("n_lines"),
                )
            )
        finally:
            started.set()
        scans = query.collect().row(0)
        lines = split_lines(data) if with_lines else None
        return bool(scans[0]), int(scans[1]), int(scans[2]), lines

    def _heads_vouch(self, data: bytes, n_lines: int, heads: int) -> bool:
        """Whether `heads` (see `_scan_text`) says that the lines of a chunk without a \\u escape,
        whose n_lines requests all decoded, are one request each, none naming a key twice."""
        first_line_keys = self._first_line_keys(data)
        return (
            first_line_keys is not None
            and heads == n_lines - 1 + first_line_keys
            and data.endswith((b"}\n", b"}\r\n"))
        )

    def _first_line_keys(self, data: bytes) -> int | None:
        """How many watched keys the first line names, if it starts with a head holding all of
        them; else None."""
        first = data[: data.find(b"\n")]
        head = self.first_head.match(first)
        if head is None:
            return None
        keys = len(_ANY_WATCHED_KEY_BYTES.findall(first))
        return keys if keys == len(_ANY_WATCHED_KEY_BYTES.findall(head.group())) else None

    def _decode_each(self, data: bytes, lines: pl.Series) -> tuple[list[Any], list[int]]:
        """One request (or None) per line, and the rows msgspec could not read."""
        whole = self._decode_whole(data)
        # decode_lines reads values separated by any whitespace: one value per line only if there
        # are as many as lines and each line starts with '{' and ends with '}' (a line break
        # cannot sit in a string, and '{' cannot follow a closing '}' inside a value).
        if whole is not None and len(whole) == lines.len() and _each_line_is_one_object(lines):
            return whole, []
        values: list[Any] = []
        undecoded: list[int] = []
        for row, raw in enumerate(data.split(b"\n")[: lines.len()]):
            try:
                values.append(self._decode(raw))
            except _DECODE_ERRORS:
                values.append(None)
                undecoded.append(row)
        return values, undecoded

    def _embedding_inputs(self, values: Sequence[Any]) -> list[int]:
        """The embedding inputs of each request, counted as `count_embedding_inputs` does."""
        counts = []
        for value in values:
            given = None if value is None or value.body.input is msgspec.UNSET else value.body.input
            counts.append(count_embedding_inputs(given))
        return counts

    def _flag_by_line(
        self, lines: pl.Series, undecoded: list[int], escape_or_exponent: bool
    ) -> list[int]:
        """Rows whose text the line by line scans cannot vouch for."""
        flags = [lines.str.count_matches(f'"{key}"', literal=True) > 1 for key in WATCHED_KEYS]
        if escape_or_exponent:
            flags.append(lines.str.contains(_ESCAPED_KEY))
            flags.append(lines.str.contains(_EXPONENT))
        flagged = flags[0]
        for flag in flags[1:]:
            flagged = flagged | flag
        return flagged.arg_true().to_list()


@functools.cache
def _text_scans() -> ThreadPoolExecutor:
    """The thread that runs polars' scans of a chunk's text."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request-scan")


# A child process does not inherit the thread: it starts its own.
os.register_at_fork(after_in_child=_text_scans.cache_clear)


def _each_line_is_one_object(lines: pl.Series) -> bool:
    return bool((lines.str.starts_with("{") & lines.str.ends_with("}")).all())
