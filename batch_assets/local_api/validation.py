"""What the Batch API checks while a batch is `validating`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_assets.local_api.local_models import (
    count_embedding_inputs,
    estimate_input_tokens,
    model_of,
)

MAX_REQUESTS = 50_000
MAX_EMBEDDING_INPUTS = 50_000
MAX_REPORTED_ERRORS = 100


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
            f"Invalid value for 'method': only 'POST' is supported, got '{request['method']}'.",
            line=number,
            param="method",
        ), None
    if request["url"] != endpoint:
        return batch_error(
            "url_mismatch",
            f"The url '{request['url']}' of this request does not match the batch endpoint "
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


def validate_input_file(path: Path, endpoint: str) -> ValidationOutcome:
    """Stream through a batch input file and apply every rule of the Batch API."""
    outcome = ValidationOutcome()
    errors = outcome.errors
    seen_ids: set[str] = set()
    embedding_inputs = 0
    total = 0
    content = hashlib.blake2b(digest_size=16)
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            total = number
            content.update(raw)
            if len(errors) >= MAX_REPORTED_ERRORS:
                continue
            try:
                request = json.loads(raw)
            except ValueError:
                errors.append(
                    batch_error(
                        "invalid_json_line",
                        "This line is not parseable as valid JSON.",
                        line=number,
                    )
                )
                continue
            problem, body = _check_line(request, number, endpoint)
            if problem is not None:
                errors.append(problem)
                continue
            assert body is not None
            custom_id = request["custom_id"]
            if custom_id in seen_ids:
                errors.append(
                    batch_error(
                        "duplicate_custom_id",
                        f"The custom_id '{custom_id}' is a duplicate of another request's; "
                        "custom_id must be unique for each request in a batch.",
                        line=number,
                        param="custom_id",
                    )
                )
                continue
            seen_ids.add(custom_id)
            model = model_of(endpoint, body)
            if outcome.model is None:
                outcome.model = model
            elif model != outcome.model:
                errors.append(
                    batch_error(
                        "model_mismatch",
                        f"The model '{model}' differs from the model '{outcome.model}' of the "
                        "lines before it; a batch may use only one model.",
                        line=number,
                        param="body.model",
                    )
                )
                continue
            outcome.input_tokens += estimate_input_tokens(endpoint, body)
            if endpoint == "/v1/embeddings":
                embedding_inputs += count_embedding_inputs(body)
    outcome.digest = content.hexdigest()
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
                f"The batch has {embedding_inputs:,} embedding inputs across its requests, "
                f"more than the {MAX_EMBEDDING_INPUTS:,} allowed.",
            )
        )
    outcome.total = total
    return outcome
