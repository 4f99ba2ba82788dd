"""What the Batch API checks while a batch is `validating`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from batch_assets.local_api.errors import shown
from batch_assets.local_api.json_codec import decode_json
from batch_assets.local_api.local_models import (
    count_embedding_inputs,
    estimate_input_tokens,
    holds_lone_surrogate,
    model_of,
)
from batch_assets.local_api.local_models.token_counting import (
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
)

MAX_REQUESTS = 50_000
MAX_EMBEDDING_INPUTS = 50_000
MAX_REPORTED_ERRORS = 100
# A surrogate as a JSON escape or as raw bytes (which Python's reader lets through); only lines
# holding one are searched for a lone surrogate.
_MAY_HOLD_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


@dataclass
class ValidationOutcome:
    """The errors found (as `BatchError` dicts) and, when there are none, what the file holds."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    model: str | None = None
    input_tokens: int = 0
    digest: str = ""


def batch_error(
    code: str, message: str, *, line: int | None = None, param: str | None = None
) -> dict[str, Any]:
    """One entry of a failed batch's `errors.data`."""
    return {"code": code, "message": message, "param": param, "line": line}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_line(
    request: Any, number: int, endpoint: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The first problem of one parsed line, or None; and the request body when it is usable."""
    if not isinstance(request, dict):
        return batch_error("invalid_request", "Each line must be a JSON object.", line=number), None
    for name, expected in (("custom_id", str), ("method", str), ("url", str), ("body", dict)):
        if name not in request:
            return batch_error(
                "missing_required_parameter",
                f"Missing required parameter: '{name}'.",
                line=number,
                param=name,
            ), None
        if not isinstance(request[name], expected):
            return batch_error(
                "invalid_type",
                f"Invalid type for '{name}': expected "
                f"{'an object' if expected is dict else 'a string'}, "
                f"but got {_type_name(request[name])}.",
                line=number,
                param=name,
            ), None
    if request["method"] != "POST":
        return batch_error(
            "invalid_value",
            "Invalid value for 'method': only 'POST' is supported, "
            f"got '{shown(request['method'])}'.",
            line=number,
            param="method",
        ), None
    if request["url"] != endpoint:
        return batch_error(
            "url_mismatch",
            f"The url '{shown(request['url'])}' of this request does not match the batch endpoint "
            f"'{endpoint}'.",
            line=number,
            param="url",
        ), None
    body = request["body"]
    if model_of(endpoint, body) is None:
        return batch_error(
            "missing_required_parameter",
            "Missing required parameter: 'body.model'.",
            line=number,
            param="body.model",
        ), None
    return None, body


def describe_failure(exc: BaseException) -> str:
    """Why a request could not be handled, short enough for an error message."""
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    return f"{type(exc).__name__}: {shown(str(exc))}"


def _holds_lone_surrogate(value: Any) -> bool:
    """Whether a string or key anywhere in a parsed JSON value holds a lone UTF-16 surrogate.

    The rule is the local models' (`holds_lone_surrogate`); this walk covers the whole line and,
    unlike their body check, leaves depth and numbers to each request's own answer.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if holds_lone_surrogate(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _parse_line(raw: bytes, number: int) -> tuple[Any, dict[str, Any] | None]:
    """One line as JSON, or the error that it is not parseable (whatever the reader raised).

    OpenAI's parser refuses a lone UTF-16 surrogate, which Python's reads; so does this one.
    """
    reason = ""
    try:
        request = decode_json(raw)
        if not (_may_hold_surrogate(raw) and _holds_lone_surrogate(request)):
            return request, None
        reason = ": it holds a lone UTF-16 surrogate, which is not valid Unicode"
    except Exception as exc:
        reason = f": {describe_failure(exc)}" if isinstance(exc, RecursionError) else ""
    message = f"This line is not parseable as valid JSON{reason}."
    return None, batch_error("invalid_json_line", message, line=number)


def _may_hold_surrogate(raw: bytes) -> bool:
    """Whether a line may hold a surrogate (`_MAY_HOLD_SURROGATE`; the regex runs only on lines
    that hold a JSON escape or an 0xed byte at all)."""
    if b"\\u" not in raw and b"\xed" not in raw:
        return False
    return _MAY_HOLD_SURROGATE.search(raw) is not None


class _PlainMessage(msgspec.Struct, forbid_unknown_fields=True):
    """A chat message of a role and a text only."""

    role: Any
    content: str


class _PlainChatBody(msgspec.Struct):
    """What the rules read of a chat body (the rest is skipped, its JSON checked)."""

    model: str
    messages: list[_PlainMessage]

    def input_tokens(self) -> int:
        """`estimate_input_tokens` of the body (plain messages: text and overhead)."""
        if not self.messages:
            return 0
        return REPLY_PRIMING_TOKENS + sum(
            MESSAGE_OVERHEAD_TOKENS + (len(message.content) + 3) // 4 for message in self.messages
        )


class _PlainChatLine(msgspec.Struct):
    """A chat request line whose fields have the types the rules ask for."""

    custom_id: str
    method: str
    url: str
    body: _PlainChatBody


_PLAIN_CHAT_LINE = msgspec.json.Decoder(_PlainChatLine)


def plain_chat_line(raw: bytes) -> _PlainChatLine | None:
    """A chat line that passes the rules of a single line, read with msgspec into the fields
    the rules use; None when the line needs the full reading of `_parse_line` and `check`
    (its bytes are not all ASCII or hold a JSON escape of a code point, so that a lone surrogate
    may hide in what msgspec skips; a field has another type; the message items are not plain;
    the method or url is wrong; the JSON is bad), which then finds what it is."""
    if not raw.isascii() or b"\\u" in raw:
        return None
    try:
        line = _PLAIN_CHAT_LINE.decode(raw)
    except Exception:  # whatever it is, the full reading names it
        return None
    if line.method != "POST" or line.url != "/v1/chat/completions":
        return None
    return line


@dataclass
class _FileCheck:
    """The rules that span lines: unique custom_ids, one model, counted tokens and inputs."""

    endpoint: str
    outcome: ValidationOutcome
    seen_ids: set[str] = field(default_factory=set)
    embedding_inputs: int = 0

    def check(self, request: Any, number: int) -> dict[str, Any] | None:
        """The first problem of one parsed line, or None when it passes every rule."""
        problem, body = _check_line(request, number, self.endpoint)
        if problem is not None:
            return problem
        assert body is not None
        custom_id = request["custom_id"]
        if custom_id in self.seen_ids:
            return batch_error(
                "duplicate_custom_id",
                f"The custom_id '{shown(custom_id)}' is a duplicate of another request's; "
                "custom_id must be unique for each request in a batch.",
                line=number,
                param="custom_id",
            )
        self.seen_ids.add(custom_id)
        model = model_of(self.endpoint, body)
        if self.outcome.model is None:
            self.outcome.model = model
        elif model != self.outcome.model:
            return batch_error(
                "model_mismatch",
                f"The model '{shown(model)}' differs from the model "
                f"'{shown(self.outcome.model)}' of the lines before it; a batch may use only one "
                "model.",
                line=number,
                param="body.model",
            )
        self.outcome.input_tokens += estimate_input_tokens(self.endpoint, body)
        if self.endpoint == "/v1/embeddings":
            self.embedding_inputs += count_embedding_inputs(body)
        return None

    def check_raw(self, raw: bytes, number: int) -> dict[str, Any] | None:
        """The first problem of one line as read, or None when it passes every rule."""
        if self.endpoint == "/v1/chat/completions":
            plain = plain_chat_line(raw)
            if (
                plain is not None
                and plain.custom_id not in self.seen_ids
                and self.outcome.model in (None, plain.body.model)
            ):
                self.seen_ids.add(plain.custom_id)
                self.outcome.model = plain.body.model
                self.outcome.input_tokens += plain.body.input_tokens()
                return None
        request, problem = _parse_line(raw, number)
        return problem if problem is not None else self.check_safely(request, number)

    def check_safely(self, request: Any, number: int) -> dict[str, Any] | None:
        """`check`, with anything a line makes the checks raise reported as that line's error."""
        try:
            return self.check(request, number)
        except Exception as exc:
            return batch_error(
                "invalid_request",
                f"This line could not be validated: {describe_failure(exc)}.",
                line=number,
            )


def validate_input_file(path: Path, endpoint: str) -> ValidationOutcome:
    """Stream through a batch input file and apply every rule of the Batch API."""
    outcome = ValidationOutcome()
    errors = outcome.errors
    rules = _FileCheck(endpoint, outcome)
    total = 0
    content = hashlib.blake2b(digest_size=16)
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            total = number
            content.update(raw)
            if len(errors) >= MAX_REPORTED_ERRORS:
                continue
            problem = rules.check_raw(raw, number)
            if problem is not None:
                errors.append(problem)
    outcome.digest = content.hexdigest()
    outcome.total = total
    _check_file_limits(outcome, rules.embedding_inputs)
    return outcome


def _check_file_limits(outcome: ValidationOutcome, embedding_inputs: int) -> None:
    """Add the errors of the rules on the whole file: empty, too many requests or inputs."""
    errors, total = outcome.errors, outcome.total
    if total == 0:
        errors.append(batch_error("empty_file", "The batch input file is empty."))
    if total > MAX_REQUESTS:
        errors.append(
            batch_error(
                "too_many_tasks",
                f"The batch input file has {total:,} requests, more than the "
                f"{MAX_REQUESTS:,} allowed.",
            )
        )
    if embedding_inputs > MAX_EMBEDDING_INPUTS:
        errors.append(
            batch_error(
                "too_many_tasks",
                f"The batch has {embedding_inputs:,} embedding inputs across its "
                f"requests, more than the {MAX_EMBEDDING_INPUTS:,} allowed.",
            )
        )


@dataclass
class PartOutcome:
    """What the rules within a byte range of an input file found: whether every line passed,
    and, when they all did, what the lines hold."""

    clean: bool
    total: int = 0
    model: str | None = None
    input_tokens: int = 0
    embedding_inputs: int = 0
    custom_ids: set[str] = field(default_factory=set)


def validate_part(path: Path, endpoint: str, start: int, end: int) -> PartOutcome:
    """Apply the rules of single lines and of the lines among themselves to the lines from byte
    `start` (a line's start) up to byte `end`; stops at the first line that breaks one."""
    outcome = ValidationOutcome()
    rules = _FileCheck(endpoint, outcome)
    total = 0
    with path.open("rb") as lines:
        lines.seek(start)
        at = start
        while at < end:
            raw = lines.readline()
            if not raw:
                break
            at += len(raw)
            total += 1
            if rules.check_raw(raw, total) is not None:
                return PartOutcome(clean=False)
    return PartOutcome(
        True, total, outcome.model, outcome.input_tokens, rules.embedding_inputs, rules.seen_ids
    )


def line_start_near(path: Path, offset: int) -> int:
    """The start of the first line at or after byte `offset` (the file's size past its end)."""
    with path.open("rb") as lines:
        if offset <= 0:
            return 0
        lines.seek(offset - 1)
        lines.readline()
        return lines.tell()


def joined_outcome(path: Path, first: PartOutcome, second: PartOutcome) -> ValidationOutcome | None:
    """The outcome of the whole file from two clean parts that split it, first then second;
    None when the parts do not tell it alone (a part broke a rule, or the rules among lines
    meet across the split: a custom_id in both, or two models)."""
    if not (first.clean and second.clean) or not first.custom_ids.isdisjoint(second.custom_ids):
        return None
    models = {part.model for part in (first, second) if part.total > 0}
    if len(models) > 1:
        return None
    outcome = ValidationOutcome(
        total=first.total + second.total,
        model=next(iter(models), None),
        input_tokens=first.input_tokens + second.input_tokens,
        digest=file_digest(path),
    )
    _check_file_limits(outcome, first.embedding_inputs + second.embedding_inputs)
    return outcome


def file_digest(path: Path) -> str:
    """The digest of an input file's content, as `validate_input_file` reckons it."""
    content = hashlib.blake2b(digest_size=16)
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            content.update(chunk)
    return content.hexdigest()
