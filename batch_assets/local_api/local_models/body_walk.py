"""The walk over a whole request body: its depth, lone surrogates and numbers past a double."""

import math
import re
from collections.abc import Iterable
from typing import Any

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
    stack: list[tuple[object, int, _Path]] = [(body, 1, None)]
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
