"""Hypothesis strategies and settings the property tests share."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st


def property_settings(max_examples: int) -> settings:
    """`max_examples` under the default profile, scaled by the profile's own (`fuzz`: 25x)."""
    scale = settings.default.max_examples / 100
    return settings(max_examples=round(max_examples * scale), deadline=None)


def json_values(
    text: st.SearchStrategy[str],
    max_leaves: int,
    integers: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[Any]:
    """Any JSON value (finite numbers), nested a little, with strings and keys from `text`.

    Integers are unbounded unless `integers` says otherwise.
    """
    scalars = (
        st.none()
        | st.booleans()
        | (st.integers() if integers is None else integers)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )

    def nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)

    return st.recursive(scalars, nested, max_leaves=max_leaves)


# Characters that JSON encoders, decoders and line splitters are most often wrong about.
AWKWARD_CHARACTERS = ['"', "\\", "\n", "\r", "\x00", "\x7f", "é", "日", "😀", "\u2028", "{", "}"]


def awkward_text(max_size: int) -> st.SearchStrategy[str]:
    """Any short text, or a short run of `AWKWARD_CHARACTERS`."""
    return st.text(max_size=max_size) | st.lists(
        st.sampled_from(AWKWARD_CHARACTERS), max_size=max_size // 2
    ).map("".join)
