"""Schema plans: `instance_for` for one schema object, with its walk of the schema done once.

A plan is read from a schema once; each request then builds its value through the same builder
methods, in the same order, with the same random draws, charges and checks as `instance_for`,
and so gets the same value (or the same refusal). It only skips what depends on the schema alone:
resolving, picking the keyword that decides each node, and the walk that proves the schema has
a finite instance (whose steps it still spends, one by one). Schemas the plan does not cover
($ref, allOf, anyOf/oneOf, uniqueItems, prefixItems, objects that pad to minProperties or
name required keys outside `properties`, or nesting down to where the builder goes minimal)
get no plan: `instance_for` answers them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

from batch_assets.local_api.answer_random import AnswerRandom
from batch_assets.local_api.json_schema_instance import (
    _FORMATS,
    _SOFT_DEPTH,
    _WORDS,
    MAX_ANSWER_CHARS,
    GenerationBudget,
    SchemaRefused,
    _Builder,
    _json_size,
    _refs_in,
    _type_allows,
)

__all__ = ["SchemaPlan", "plan_for"]

_Node = Callable[[_Builder, int, str], object]
"""Builds one value as `_Builder.build(schema, depth=depth, refs=(), hint=hint)` would."""


class _NoPlan(Exception):
    """The schema has a part the plan does not cover."""


_DEADLINE_EVERY = 1024  # as json_schema_instance: the deadline is read when steps hit a multiple


class _Tally:
    """Characters and steps a quick build spent."""

    __slots__ = ("chars", "steps")

    def __init__(self) -> None:
        self.chars = 0
        self.steps = 0


_QuickBuild = Callable[[AnswerRandom, _Tally], object]


class _Quick(NamedTuple):
    """A build that cannot meet a limit: it draws and counts, the most it may spend known."""

    build: _QuickBuild
    most_chars: int
    most_steps: int


class SchemaPlan:
    """`instance_for(schema, ...)` for one schema object, which must not change afterwards."""

    def __init__(
        self, schema: dict[str, Any], root: _Node, rank_steps: int, quick: _Quick | None
    ) -> None:
        """Keep the schema, its nodes and the steps its finiteness check spends."""
        self.schema = schema
        self._root = root
        self._rank_steps = rank_steps
        self._quick = quick

    def instance(
        self,
        *,
        seed: int,
        budget: GenerationBudget | None = None,
        truncate_after: int | None = None,
    ) -> object:
        """The value (or refusal) `instance_for(self.schema, ...)` gives for the same arguments."""
        budget = budget or GenerationBudget()
        budget.ref_ranks.setdefault(id(self.schema), (self.schema, {}))
        if self._quick is not None and self._far_from_limits(budget, truncate_after):
            tally = _Tally()
            value = self._quick.build(AnswerRandom(seed), tally)
            budget.steps -= self._rank_steps + tally.steps
            budget.chars -= tally.chars
            return value
        builder = _Builder(self.schema, seed, budget, truncate_after)
        for _ in range(self._rank_steps):
            builder._step()
        return self._root(builder, 0, "")

    def _far_from_limits(self, budget: GenerationBudget, truncate_after: int | None) -> bool:
        """Whether no build of this schema can run out of steps or characters, reach the room
        of a cut answer, or cross a step at which the deadline is read."""
        assert self._quick is not None
        chars, steps = self._quick.most_chars, self._rank_steps + self._quick.most_steps
        if budget.chars < chars or budget.steps < steps:
            return False
        if truncate_after is not None and truncate_after < chars:
            return False
        if budget.deadline is None:
            return True
        return (budget.steps - 1) // _DEADLINE_EVERY == (
            budget.steps - steps - 1
        ) // _DEADLINE_EVERY


def plan_for(schema: dict[str, Any]) -> SchemaPlan | None:
    """Read a schema into a plan; None when it has a part the plan does not cover."""
    if not isinstance(schema, dict) or _refs_in(schema):
        return None
    probe = _Builder(schema, 0, GenerationBudget(), None)
    steps_before = probe.budget.steps
    try:
        probe.check_finite()
        root = _node(schema, 0)
    except (_NoPlan, SchemaRefused, RecursionError):
        return None
    try:
        quick: _Quick | None = _quick(schema, 0, "")
    except (_NoPlan, RecursionError):
        quick = None
    if quick is not None and quick.most_chars > MAX_ANSWER_CHARS:
        quick = None  # the builder's own size checks could then speak
    return SchemaPlan(schema, root, steps_before - probe.budget.steps, quick)


def _node(schema: object, depth: int) -> _Node:
    """The node that builds values for `schema` met at `depth` (as `_Builder._build` picks)."""
    if depth >= _SOFT_DEPTH:
        raise _NoPlan  # the builder goes minimal there
    node = schema if isinstance(schema, dict) else {}
    if "const" in node:
        return _entered(_const_node(node))
    if isinstance(node.get("enum"), list) and node["enum"]:
        return _entered(_enum_node(node))
    if isinstance(node.get("allOf"), list):
        raise _NoPlan
    for keyword in ("anyOf", "oneOf"):
        if isinstance(node.get(keyword), list) and node[keyword]:
            raise _NoPlan
    declared = node.get("type")
    if isinstance(declared, list) and any(isinstance(name, str) for name in declared):
        return _entered(_type_choice_node(node, declared, depth))
    kind = _Builder(node, 0, GenerationBudget(), None)._choose_type(node, minimal=False)
    return _entered(_kind_node(kind, node, depth))


def _entered(build: _Node) -> _Node:
    """Spend the step `_Builder.build` spends on entering a node, then build."""

    def entered(builder: _Builder, depth: int, hint: str) -> object:
        builder._step()
        return build(builder, depth, hint)

    return entered


def _const_node(schema: dict[str, Any]) -> _Node:
    value = schema["const"]
    return lambda builder, depth, hint: builder._copied(value)


def _enum_node(schema: dict[str, Any]) -> _Node:
    return lambda builder, depth, hint: builder._copied(builder._pick_enum(schema, False))


def _type_choice_node(schema: dict[str, Any], declared: list[Any], depth: int) -> _Node:
    """A node whose type is drawn from a list of types, then built as that type."""
    kinds = {name: _kind_node(name, schema, depth) for name in declared if isinstance(name, str)}

    def build(builder: _Builder, depth: int, hint: str) -> object:
        return kinds[builder._choose_type(schema, False)](builder, depth, hint)

    return build


def _kind_node(kind: str, schema: dict[str, Any], depth: int) -> _Node:
    """The node that builds a value of one JSON type for `schema`."""
    if kind == "array":
        return _array_node(schema, depth)
    if kind == "object":
        return _object_node(schema, depth)
    if kind == "null":
        return lambda builder, depth, hint: builder._charged(None)
    if kind == "boolean":
        return lambda builder, depth, hint: builder._charged(builder.rng.random() < 0.5)
    if kind == "integer":
        return lambda builder, depth, hint: builder._charged(builder._integer(schema))
    if kind == "number":
        return lambda builder, depth, hint: builder._charged(builder._number(schema))
    return lambda builder, depth, hint: builder._charged(builder._string(schema, hint))


def _array_node(schema: dict[str, Any], depth: int) -> _Node:
    """`_Builder._array` (not minimal) for an array without prefixItems or uniqueItems."""
    prefix = schema.get("prefixItems")
    if (isinstance(prefix, list) and prefix) or schema.get("uniqueItems") is True:
        raise _NoPlan
    low = schema.get("minItems", 0)
    low = low if isinstance(low, int) else 0
    high = schema.get("maxItems")
    high = high if isinstance(high, int) else None
    items = schema.get("items", {})
    item = None if items is False else _node(items, depth + 1)
    start = max(low, 1)

    def build(builder: _Builder, depth: int, hint: str) -> list[object]:
        count = builder.rng.randint(start, start + 2)
        if high is not None:
            count = min(count, high)
        if item is None:
            count = min(count, 0)
        count = max(count, 0)
        needed = 2 * min(count, low) + 1
        if builder.room is None and needed > MAX_ANSWER_CHARS:
            raise builder._too_long("minItems", low, needed)
        out: list[object] = []
        builder._spend(1, closing=1)
        for index in range(count):
            if builder.stopped:
                break
            builder._spend(1 if out else 0)
            builder.path.append(index)
            out.append(item(builder, depth + 1, hint))  # type: ignore[misc]
            builder.path.pop()
        return out

    return build


def _object_node(schema: dict[str, Any], depth: int) -> _Node:
    """`_Builder._object` (not minimal) for an object whose every member is a property."""
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
    extra = schema.get("additionalProperties", True)
    if "minProperties" in schema or any(name not in props for name in required):
        raise _NoPlan
    if not props and isinstance(extra, dict):
        raise _NoPlan  # pads with extra members
    members = [(name, _node(sub, depth + 1)) for name, sub in props.items()]

    def build(builder: _Builder, depth: int, hint: str) -> dict[str, object]:
        out: dict[str, object] = {}
        builder._spend(1, closing=1)
        for name, member in members:
            if builder.stopped:
                continue
            builder._spend(len(name) + (3 if not out else 4))
            builder.path.append(name)
            out[name] = member(builder, depth + 1, name)
            builder.path.pop()
        return out

    return build


def _quick(schema: object, depth: int, hint: str) -> _Quick:
    """The quick build of `schema` met at `depth` with `hint` (as `_node` picks, fewer kinds)."""
    if depth >= _SOFT_DEPTH:
        raise _NoPlan
    node = schema if isinstance(schema, dict) else {}
    if "const" in node:
        return _entered_quick(_quick_const(node["const"]))
    if isinstance(node.get("enum"), list) and node["enum"]:
        return _entered_quick(_quick_enum(node))
    if isinstance(node.get("allOf"), list):
        raise _NoPlan
    for keyword in ("anyOf", "oneOf"):
        if isinstance(node.get(keyword), list) and node[keyword]:
            raise _NoPlan
    declared = node.get("type")
    if isinstance(declared, list) and any(isinstance(name, str) for name in declared):
        return _entered_quick(_quick_type_choice(node, declared, depth, hint))
    kind = _Builder(node, 0, GenerationBudget(), None)._choose_type(node, minimal=False)
    return _entered_quick(_quick_kind(kind, node, depth, hint))


def _entered_quick(inner: _Quick) -> _Quick:
    """Count the step `_Builder.build` spends on entering a node."""
    build = inner.build

    def entered(rng: AnswerRandom, tally: _Tally) -> object:
        tally.steps += 1
        return build(rng, tally)

    return _Quick(entered, inner.most_chars, inner.most_steps + 1)


def _quick_const(value: object) -> _Quick:
    size = _json_size(value)
    copies = isinstance(value, dict | list)

    def build(rng: AnswerRandom, tally: _Tally) -> object:
        tally.chars += size
        return copy.deepcopy(value) if copies else value

    return _Quick(build, size, 0)


def _quick_enum(schema: dict[str, Any]) -> _Quick:
    """`_Builder._pick_enum` (not minimal), then `_copied`."""
    values = [v for v in schema["enum"] if _type_allows(schema.get("type"), v)]
    values = values or schema["enum"]
    if any(isinstance(v, dict | list) for v in values):
        raise _NoPlan
    sized = [(value, _json_size(value)) for value in values]  # one draw picks as from `values`

    def build(rng: AnswerRandom, tally: _Tally) -> object:
        value, size = rng.choice(sized)
        tally.chars += size
        return value

    return _Quick(build, max(size for _, size in sized), 0)


def _quick_type_choice(
    schema: dict[str, Any], declared: list[Any], depth: int, hint: str
) -> _Quick:
    names = [name for name in declared if isinstance(name, str)]
    concrete = [name for name in names if name != "null"] or names
    kinds = [_quick_kind(name, schema, depth, hint) for name in concrete]
    builds = [kind.build for kind in kinds]  # one draw picks as from `concrete`

    def build(rng: AnswerRandom, tally: _Tally) -> object:
        return rng.choice(builds)(rng, tally)

    most_chars = max(kind.most_chars for kind in kinds)
    return _Quick(build, most_chars, max(kind.most_steps for kind in kinds))


def _quick_kind(kind: str, schema: dict[str, Any], depth: int, hint: str) -> _Quick:
    if kind == "array":
        return _quick_array(schema, depth, hint)
    if kind == "object":
        return _quick_object(schema, depth)
    if kind == "null":
        return _Quick(_quick_null, 4, 0)
    if kind == "boolean":
        return _Quick(_quick_boolean, 5, 0)
    if kind in ("integer", "number"):
        raise _NoPlan
    return _quick_string(schema, hint)


def _quick_null(rng: AnswerRandom, tally: _Tally) -> object:
    tally.chars += 4
    return None


def _quick_boolean(rng: AnswerRandom, tally: _Tally) -> object:
    value = rng.random() < 0.5
    tally.chars += 4 if value else 5
    return value


def _quick_string(schema: dict[str, Any], hint: str) -> _Quick:
    """`_Builder._string` for a string of words: no format, pattern or minLength."""
    low = schema.get("minLength", 0)
    low = low if isinstance(low, int) else 0
    high = schema.get("maxLength")
    high = high if isinstance(high, int) else None
    fmt = schema.get("format")
    if low != 0 or (isinstance(fmt, str) and fmt in _FORMATS):
        raise _NoPlan
    if isinstance(schema.get("pattern"), str):
        raise _NoPlan
    first = hint.replace("_", " ").strip() if hint else None
    longest_word = max(map(len, _WORDS))
    most = (longest_word if first is None else len(first)) + 1 + longest_word + 2

    def build(rng: AnswerRandom, tally: _Tally) -> object:
        lead = rng.choice(_WORDS) if first is None else first
        text = f"{lead} {rng.choice(_WORDS)}"
        if high is not None and len(text) > high:
            text = text[:high].rstrip()
        tally.chars += len(text) + 2
        return text

    return _Quick(build, most, 0)


def _quick_array(schema: dict[str, Any], depth: int, hint: str) -> _Quick:
    """`_Builder._array` (not minimal) for an array without prefixItems or uniqueItems."""
    prefix = schema.get("prefixItems")
    if (isinstance(prefix, list) and prefix) or schema.get("uniqueItems") is True:
        raise _NoPlan
    low = schema.get("minItems", 0)
    low = low if isinstance(low, int) else 0
    high = schema.get("maxItems")
    high = high if isinstance(high, int) else None
    items = schema.get("items", {})
    if items is False:
        raise _NoPlan
    item = _quick(items, depth + 1, hint)
    start = max(low, 1)
    most_count = max(start + 2 if high is None else min(start + 2, high), 0)
    item_build = item.build

    def build(rng: AnswerRandom, tally: _Tally) -> object:
        count = rng.randint(start, start + 2)
        if high is not None:
            count = min(count, high)
        out = [item_build(rng, tally) for _ in range(count)]
        tally.chars += 2 + max(len(out) - 1, 0)
        return out

    most_chars = 2 + most_count * (item.most_chars + 1)
    return _Quick(build, most_chars, most_count * item.most_steps)


def _quick_object(schema: dict[str, Any], depth: int) -> _Quick:
    """`_Builder._object` (not minimal) for an object whose every member is a property."""
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
    extra = schema.get("additionalProperties", True)
    if "minProperties" in schema or any(name not in props for name in required):
        raise _NoPlan
    if not props and isinstance(extra, dict):
        raise _NoPlan
    members = [(name, _quick(sub, depth + 1, name)) for name, sub in props.items()]
    builds = [(name, member.build) for name, member in members]
    # "{}" and, per member, its quoted name, a colon and a comma (none before the first)
    frame = 2 + sum(len(name) + 4 for name in props) - (1 if props else 0)

    def build(rng: AnswerRandom, tally: _Tally) -> object:
        tally.chars += frame
        return {name: member(rng, tally) for name, member in builds}

    most_chars = frame + sum(member.most_chars for _, member in members)
    return _Quick(build, most_chars, sum(member.most_steps for _, member in members))
