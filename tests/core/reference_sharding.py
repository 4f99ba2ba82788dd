"""The slow reference implementations of sharding, kept as they were before plain batches.

`reference_shard_requests` is the loop that validated, encoded (with the `json` module's C encoder)
and placed one request dict at a time. (`shard_template_frame`'s reference is rendering first and
`shard_request_frame`, which the module keeps as its fallback.) The property tests check that the
fast paths give the same shards, byte for byte, the same Shard records and the same errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from upath import UPath

from batch_assets.core.limits import DEFAULT_LIMITS, EMBEDDINGS, BatchLimits
from batch_assets.core.request_validation import (
    RequestInfo,
    RequestValidationError,
    SeenIds,
    check_request,
    empty_input_error,
)
from batch_assets.core.sharding import (
    _FLUSH_BYTES,
    Shard,
    ShardWriter,
    _chunk_encoder,
    _long_integer_error,
    _OpenShard,
    _unwritable,
    _write_all,
    _write_checked,
)

_NO_MODEL = object()


def reference_shard_requests(
    requests: Iterable[Mapping[str, Any]],
    out_dir: str | Path | UPath,
    *,
    endpoint: str,
    limits: BatchLimits = DEFAULT_LIMITS,
    prefix: str = "shard",
    source: str | None = "requests",
) -> list[Shard]:
    """`shard_requests`, one request at a time."""
    writer = ShardWriter(out_dir, endpoint=endpoint, limits=limits, prefix=prefix)
    return _write_all(writer, _reference_requests_into(writer, requests, limits, source))


def _reference_requests_into(
    writer: ShardWriter,
    requests: Iterable[Mapping[str, Any]],
    limits: BatchLimits,
    source: str | None,
) -> Iterator[None]:
    """Validate, encode and place request dicts one at a time (the loop before plain batches)."""
    endpoint = writer.endpoint
    embeddings = endpoint == EMBEDDINGS
    encode = _chunk_encoder()
    max_requests, max_bytes = limits.max_requests, limits.max_bytes
    max_inputs = limits.max_embedding_inputs
    seen = SeenIds(source)
    ids: list[str] = []  # custom_ids since the last flush
    ids_from = 1  # the line of ids[0]
    pending: list[bytes] = []  # lines since the last write, not yet checked for long integers
    pending_from = 1  # the line of pending[0]
    shard: _OpenShard | None = None
    # The counters of `shard`, kept in locals while it is the one being filled.
    model_now: object = _NO_MODEL
    n_requests = n_bytes = n_inputs = flush_at = inputs = 0
    line = 0

    def check(request: object) -> RequestInfo:
        return check_request(request, line=line, endpoint=endpoint, limits=limits, source=source)

    try:
        for line, request in enumerate(requests, start=1):
            try:  # plainly valid, else `check` decides (and names the problem)
                plain = (
                    type(request) is dict
                    and type(body := request["body"]) is dict
                    and (custom_id := request["custom_id"]).isascii()
                    and (model := body["model"]).isascii()
                    and custom_id
                    and model
                    and request["method"] == "POST"
                    and request["url"] == endpoint
                    and not embeddings
                )
            except (LookupError, TypeError, AttributeError):
                plain = False
            if not plain:
                info = check(request)
                custom_id, model, inputs = info.custom_id, info.model, info.embedding_inputs
            try:
                data = "".join(encode(request, 0)).encode("utf-8")
            except (TypeError, ValueError, RecursionError) as exc:
                custom_id = check(request).custom_id  # a non-string custom_id or model, say
                ids.append(custom_id)
                raise _unwritable(request, exc, line, source) from None
            ids.append(custom_id)
            size = len(data) + 1
            if (
                n_bytes + size > max_bytes
                or n_requests == max_requests
                or model != model_now
                or (inputs and n_inputs + inputs > max_inputs)
            ):
                if size > max_bytes:
                    raise _long_integer_error([data], line, source) or RequestValidationError(
                        f"the line is {size:,} bytes with its line end, more than max_bytes "
                        f"({max_bytes:,}) allows in one batch",
                        line=line,
                        code="line_too_large",
                        source=source,
                    )
                if shard is not None:
                    _write_checked(shard, pending, pending_from, source)
                    shard.n_requests, shard.n_bytes, shard.n_inputs = n_requests, n_bytes, n_inputs
                shard = writer.shard_for(model, size, inputs)
                model_now, pending, pending_from = model, [], line
                n_requests, n_bytes, n_inputs = shard.n_requests, shard.n_bytes, shard.n_inputs
                flush_at = n_bytes + _FLUSH_BYTES
            pending.append(data)
            n_requests += 1
            n_bytes += size
            n_inputs += inputs
            if n_bytes >= flush_at:
                _write_checked(shard, pending, pending_from, source)  # type: ignore[arg-type]
                seen.add(ids)
                pending, ids, flush_at = [], [], n_bytes + _FLUSH_BYTES
                pending_from = ids_from = line + 1
        if shard is None:
            raise empty_input_error(source)
        _write_checked(shard, pending, pending_from, source)
    except RequestValidationError as exc:
        # The unchecked lines come before this problem: an integer there is found first.
        error = _long_integer_error(pending, pending_from, source) or exc
        if error.line is not None:
            del ids[error.line - ids_from + 1 :]
        seen.add(ids)
        seen.raise_first_problem(error)
        raise error from None
    shard.n_requests, shard.n_bytes, shard.n_inputs = n_requests, n_bytes, n_inputs
    seen.add(ids)
    seen.raise_first_problem()
    yield
