"""Hypothesis strategies more than one property test draws from."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(text: st.SearchStrategy[str], max_leaves: int) -> st.SearchStrategy[Any]:
    """Any JSON value (finite numbers), nested a little, with strings and keys from `text`."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )

    def nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)

    return st.recursive(scalars, nested, max_leaves=max_leaves)
