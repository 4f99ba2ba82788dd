"""The walk over a whole request body: its depth, lone surrogates and numbers past a double."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable
from typing import Any

from batch_assets.local_api.json_codec import value_key
from batch_assets.local_api.json_schema_instance import fits_double
from batch_assets.local_api.local_models.rejections import RequestRejected

# JSON nesting a request body may have (OpenAI's schemas nest 10 objects, about 40 JSON levels).
MAX_BODY_DEPTH = 100
_SHOWN_PATH_PARTS = 8
_ATOMS = frozenset({str, bool, type(None)})

# A UTF-16 surrogate on its own: JSON may escape one (\ud800) but it is no Unicode character.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def holds_lone_surrogate(text: str) -> bool:
    """Tell whether a string holds a lone UTF-16 surrogate (which is not valid Unicode)."""
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


def check_body_values(body: dict[str, Any]) -> None:
    """Refuse a body nested deeper than MAX_BODY_DEPTH, or holding a lone surrogate (in a string
    or key) or a number outside a double.

    One walk over the containers; containers of plain ASCII strings, booleans, nulls or integers
    are passed at C speed, and a path is spelt out only for an error.
    """
    _walk([(body, 1, None)])


def _walk(stack: list[tuple[Any, int, _Path]]) -> None:
    """Walk containers from `stack` (value, depth, path) down, raising at the first problem."""
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_BODY_DEPTH:
            param = _param_path(path)
            raise RequestRejected(
                f"Invalid '{param}': the request nests JSON deeper than {MAX_BODY_DEPTH} levels.",
                param=param,
                code="invalid_value",
            )
        if type(value) is dict:
            pairs: Iterable[tuple[Any, Any]] = value.items()
            if not "".join(value).isascii():
                _check_keys(value, path)
        elif _plain_list(value):
            continue
        else:
            pairs = enumerate(value)
        for key, item in pairs:
            kind = type(item)
            if kind is str:
                if holds_lone_surrogate(item):
                    raise _lone_surrogate(_param_path((path, key)))
            elif kind is dict or kind is list:
                stack.append((item, depth + 1, (path, key)))
            elif (kind is float or kind is int) and not fits_double(item):
                raise _outside_double(_param_path((path, key)), item)


_Path = tuple["_Path", str | int] | None  # (parent path, key or index)

# The rest of bodies found clean before (all but the part each request has of its own), by value.
_CLEAN_RESTS: dict[bytes, dict[str, Any]] = {}
_CLEAN_RESTS_SIZE = 256
# The containers of the kept rests, by id (kept alive here).
_SHARED_VALUES: dict[int, object] = {}


def check_templated_body(body: dict[str, Any], own: str) -> dict[str, Any]:
    """`check_body_values`, walking only `body[own]` when the rest of the body (what a batch's
    requests share: the model, the parameters, a schema) was found clean before; returns the
    body to answer, whose shared values are then the very objects found clean before (equal to
    the request's, types included), so that later caches know them by identity.

    A clean part raises nothing wherever the walk meets it, so leaving it out changes neither
    whether the body is refused nor which error comes first.
    """
    return check_templated_body_and_rest(body, own)[0]


def check_templated_body_and_rest(
    body: dict[str, Any], own: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`check_templated_body`, and the kept rest whose values the returned body's are (None
    when there is none): a private object no request changes, for caches to know by identity.
    """
    if own not in body:
        check_body_values(body)
        return body, None
    rest = {key: value for key, value in body.items() if key != own}
    key = value_key(rest)
    # Equal keys are equal values (types and key order included), so a kept rest is not
    # compared again.
    known = None if key is None else _CLEAN_RESTS.get(key)
    if known is None:
        check_body_values(body)
        if key is None:
            return body, None
        known = _keep_clean_rest(key, rest)
    else:
        _check_member(body[own], own)
    answered = {name: value if name == own else known[name] for name, value in body.items()}
    return answered, known


def _keep_clean_rest(key: bytes, rest: dict[str, Any]) -> dict[str, Any]:
    """Keep a private copy of a clean rest; its containers become shared values."""
    if len(_CLEAN_RESTS) >= _CLEAN_RESTS_SIZE:
        _CLEAN_RESTS.clear()
        _SHARED_VALUES.clear()
    kept = copy.deepcopy(rest)
    _CLEAN_RESTS[key] = kept
    for value in kept.values():
        if isinstance(value, dict | list):
            _SHARED_VALUES[id(value)] = value
    return kept


def is_shared_value(value: object) -> bool:
    """Whether `value` is one of the kept values of a clean rest: a private object no request
    changes, which caches may know by identity."""
    return _SHARED_VALUES.get(id(value)) is value


def _check_member(value: object, name: str) -> None:
    """Check one top-level member of a body as `check_body_values` would."""
    path: _Path = (None, name)
    kind = type(value)
    if kind is str:
        if holds_lone_surrogate(value):  # type: ignore[arg-type]
            raise _lone_surrogate(_param_path(path))
    elif kind is dict or kind is list:
        _walk([(value, 2, path)])
    elif (kind is float or kind is int) and not fits_double(value):  # type: ignore[arg-type]
        raise _outside_double(_param_path(path), value)  # type: ignore[arg-type]


def _check_keys(value: dict[str, Any], path: _Path) -> None:
    """Refuse an object with a key that holds a lone surrogate, naming the key (escaped)."""
    for key in value:
        if holds_lone_surrogate(key):
            raise _lone_surrogate(_param_path((path, key)))


def _plain_list(values: list[Any]) -> bool:
    """Tell whether a list holds only ASCII strings/booleans/nulls, or only integers in a double."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return "".join(values).isascii()
    if kinds <= _ATOMS:
        return str not in kinds
    return kinds == {int} and fits_double(max(values)) and fits_double(min(values))


def _outside_double(param: str, number: float) -> RequestRejected:
    """Build the rejection of a number no double can hold, naming where it is."""
    if isinstance(number, float):
        got = "NaN" if math.isnan(number) else f"{'-' if number < 0 else ''}infinity"
    else:
        got = f"an integer of {len(str(abs(number)))} digits"
    return RequestRejected(
        f"Invalid '{param}': number out of range. Expected a number that fits in a double "
        f"(magnitude at most 1.8e308), but got {got} instead.",
        param=param,
        code="invalid_value",
    )


def _lone_surrogate(param: str) -> RequestRejected:
    """Build the rejection of a string or key holding a lone surrogate, naming where it is."""
    return RequestRejected(
        f"Invalid '{param}': the string holds a lone UTF-16 surrogate, which is not valid "
        "Unicode. Expected a string of Unicode characters.",
        param=param,
        code="invalid_value",
    )


def _param_path(path: _Path) -> str:
    """Write a body path as OpenAI names params: "messages[0].content" (long ones cut).

    Keys are cut to 64 characters and any lone surrogate in them is written as its escape.
    """
    parts: list[str | int] = []
    while path is not None:
        path, key = path
        parts.append(key)
    parts.reverse()
    text = ""
    for part in parts[:_SHOWN_PATH_PARTS]:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = _LONE_SURROGATE.sub(lambda found: f"\\u{ord(found[0]):04x}", part[:64])
            text += f".{name}" if text else name
    return text + ("..." if len(parts) > _SHOWN_PATH_PARTS else "")
