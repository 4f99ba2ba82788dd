"""Build a deterministic value that validates against a JSON schema (structured-outputs subset)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import random
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

import rstr

from batch_assets.local_api.answer_random import AnswerRandom
from batch_assets.local_api.json_values import is_number, json_type
from batch_assets.local_api.regex_outline import outline, repeat_counts

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_BUILD_STEPS",
    "MAX_PATTERN_CHARS",
    "MAX_SCHEMA_DEPTH",
    "DeadlinePassed",
    "GenerationBudget",
    "SchemaRefused",
    "fits_double",
    "instance_for",
]

Schema = dict[str, Any]

# 128,000 tokens (the most any OpenAI model writes in one answer) at 4 characters a token.
MAX_ANSWER_CHARS = 512_000
# Values built, schema nodes weighed and regex draws made per request (all its strings and
# choices together): about a second of work at most.
MAX_BUILD_STEPS = 100_000
# Deeper than this the builder refuses: OpenAI itself allows 10 levels of nesting.
MAX_SCHEMA_DEPTH = 64
# Longest `pattern` the builder parses; longer ones are refused before any regex work.
MAX_PATTERN_CHARS = 1_000
# Rough work `re.search` may do to check one generated string (backtracking steps).
_PATTERN_CHECK_COST = 10**8
_PATTERN_ATTEMPTS = 24
# Weighed patterns kept (each holds its buildable and compiled forms).
_PATTERN_CACHE_SIZE = 64
# rstr lists every candidate of a character class to pick one (about 150 ns each): each this many
# candidates cost one more step.
_CANDIDATES_PER_STEP = 64
_FIRST_SURROGATE, _LAST_SURROGATE = "\ud800", "\udfff"
# The deadline is read once per this many steps (a power of two: a mask picks the steps).
_DEADLINE_EVERY = 1024
_EXACT_DOUBLE_LIMIT = 2**53  # integers below this in size are doubles, no need to convert

# Below this depth (or once a $ref repeats on the path) the builder goes minimal: it picks
# null/non-recursive branches, only required properties and minItems-long arrays.
_SOFT_DEPTH = 10
_REF_REPEATS = 2
_COMPACT = {"ensure_ascii": False, "separators": (",", ":")}
_ENDLESS = math.inf  # the rank of a schema with no finite minimal value

_WORDS = (
    "alpha",
    "bravo",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lumen",
    "meadow",
    "nova",
    "orchid",
    "pebble",
    "quartz",
    "river",
    "sierra",
    "tundra",
    "umber",
    "violet",
    "willow",
    "yarrow",
    "zephyr",
)
_TYPE_ORDER_MINIMAL = ("null", "boolean", "integer", "number", "string", "array", "object")
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


class SchemaRefused(ValueError):
    """A schema the builder will not answer: it has no finite instance, or it needs too much."""


class DeadlinePassed(Exception):
    """The request's deadline passed while its value was being built."""


@dataclass
class GenerationBudget:
    """What one request may still spend on built values; its choices share it."""

    chars: int = MAX_ANSWER_CHARS
    steps: int = MAX_BUILD_STEPS
    deadline: float | None = None  # time.monotonic() past which building stops
    # the ref hops each $ref's minimal value needs, per schema (by id; the schema is kept alive)
    ref_ranks: dict[int, tuple[object, dict[str, float]]] = field(default_factory=dict)


def instance_for(
    schema: dict,
    *,
    seed: int,
    budget: GenerationBudget | None = None,
    truncate_after: int | None = None,
) -> object:
    """Return a value valid against `schema`, chosen deterministically from `seed`.

    Raises SchemaRefused when the schema has no finite instance or its value would overrun the
    budget. With `truncate_after`, building stops once the value's JSON is longer than that: the
    partial value's JSON then starts with the same characters as the whole value's would.
    """
    builder = _Builder(schema, seed, budget or GenerationBudget(), truncate_after)
    builder.check_finite()
    return builder.build(schema, depth=0, refs=(), hint="")


def fits_double(number: float) -> bool:
    """Tell whether a JSON number can be read as a finite double (1e400 cannot)."""
    if isinstance(number, float):
        return math.isfinite(number)
    if -_EXACT_DOUBLE_LIMIT < number < _EXACT_DOUBLE_LIMIT:
        return True
    try:
        float(number)
    except OverflowError:
        return False
    return True


def _spend_steps(budget: GenerationBudget, count: int = 1) -> bool:
    """Spend steps of a budget; False once none are left. Past its deadline, raise.

    Steps pay for work before it is done: a charge larger than what is left spends it all and
    one step more (the budget stops at -1), and a large charge is not made past the deadline.
    """
    left = budget.steps - count
    if (
        budget.deadline is not None
        and (count > 1 or not left & (_DEADLINE_EVERY - 1))
        and time.monotonic() > budget.deadline
    ):
        raise DeadlinePassed
    budget.steps = max(left, min(budget.steps - 1, -1))
    return budget.steps >= 0


def _type_allows(declared: object, value: object) -> bool:
    """Tell whether a `type` keyword value admits `value`."""
    if declared is None:
        return True
    names = declared if isinstance(declared, list) else [declared]
    actual = json_type(value)
    if actual == "integer" and "number" in names:
        return True
    if actual == "number" and "integer" in names and float(value).is_integer():
        return True
    return actual in names


def _intersect_types(a: object, b: object) -> object:
    """Intersect two `type` keyword values (number contains integer)."""
    left = set(a if isinstance(a, list) else [a])
    right = set(b if isinstance(b, list) else [b])
    both = left & right
    if ("number" in left and "integer" in right) or ("integer" in left and "number" in right):
        both.add("integer")
    ordered = [t for t in _TYPE_ORDER_MINIMAL if t in both]
    if not ordered:
        return a
    return ordered[0] if len(ordered) == 1 else ordered


def _merge(base: Schema, extra: Schema) -> Schema:
    """Combine two object-level schemas as allOf would (tightest bounds, union of required)."""
    out = dict(base)
    for key, value in extra.items():
        if key not in out:
            out[key] = value
        elif key == "properties" and isinstance(value, dict) and isinstance(out[key], dict):
            merged = dict(out[key])
            for name, sub in value.items():
                merged[name] = {"allOf": [merged[name], sub]} if name in merged else sub
            out[key] = merged
        elif key == "required" and isinstance(value, list) and isinstance(out[key], list):
            out[key] = list(dict.fromkeys([*out[key], *value]))
        elif key in _LOWER_BOUNDS and is_number(value) and is_number(out[key]):
            out[key] = max(out[key], value)
        elif key in _UPPER_BOUNDS and is_number(value) and is_number(out[key]):
            out[key] = min(out[key], value)
        elif key == "type":
            out[key] = _intersect_types(out[key], value)
        elif key == "enum" and isinstance(value, list) and isinstance(out[key], list):
            common = [v for v in out[key] if v in value]
            out[key] = common or value
        elif key == "additionalProperties":
            out[key] = False if False in (out[key], value) else value
        else:
            out[key] = value
    return out


def _refs_in(schema: object) -> set[str]:
    """Collect every $ref string anywhere in a schema."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                found.add(node["$ref"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _json_size(value: object) -> int:
    """Count the characters of a value's compact JSON (as answers are written)."""
    if value is None or value is True:
        return 4
    if value is False:
        return 5
    if isinstance(value, str):
        return len(value) + 2  # at least: escapes only add
    if isinstance(value, int):
        return len(str(value))
    if isinstance(value, float):
        return len(repr(value))
    return len(json.dumps(value, default=repr, **_COMPACT))


def _multiple_ok(value: float, step: float) -> bool:
    """Check multipleOf the way the `jsonschema` package does (float quotient must be whole)."""
    if isinstance(step, float):
        quotient = value / step
        return math.isfinite(quotient) and int(quotient) == quotient
    return value % step == 0


class _Builder:
    """Walks one schema, drawing every choice from one seeded random stream."""

    def __init__(
        self, root: object, seed: int, budget: GenerationBudget, truncate_after: int | None
    ) -> None:
        """Keep the root (for $ref lookups), the budget, and seed the random stream."""
        self.root = root
        self.rng = AnswerRandom(seed)
        self.budget = budget
        self.room = truncate_after
        self.stopped = False  # the value reached `truncate_after`: containers close early
        self.path: list[str | int] = []
        self.ref_ranks: dict[str, float] = {}
        self._rank_memo: dict[int, tuple[object, float]] = {}
        self._ref_memo: dict[int, tuple[object, bool]] = {}

    def build(self, schema: object, *, depth: int, refs: tuple[str, ...], hint: str) -> object:
        """Return a value valid against `schema`."""
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaRefused(
                f"the value would nest deeper than {MAX_SCHEMA_DEPTH} levels (at {self.where()})"
            )
        self._step()
        return self._build(schema, depth, refs, hint)

    def _build(self, schema: object, depth: int, refs: tuple[str, ...], hint: str) -> object:
        """Build one value, charging its characters where they are made."""
        schema, refs = self._resolve(schema, refs)
        minimal = depth >= _SOFT_DEPTH or any(refs.count(r) >= _REF_REPEATS for r in refs)
        if "const" in schema:
            return self._copied(schema["const"])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._copied(self._pick_enum(schema, minimal))
        if isinstance(schema.get("allOf"), list):
            return self.build(self._flatten(schema, refs), depth=depth + 1, refs=refs, hint=hint)
        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list) and schema[keyword]:
                return self._build_choice(schema, keyword, depth, refs, hint, minimal)
        kind = self._choose_type(schema, minimal)
        if kind == "array":
            return self._array(schema, depth, refs, hint, minimal)
        if kind == "object":
            return self._object(schema, depth, refs, minimal)
        return self._charged(self._scalar(kind, schema, hint))

    def _scalar(self, kind: str, schema: Schema, hint: str) -> object:
        """Build a null, boolean, number or string."""
        if kind == "null":
            return None
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        return self._string(schema, hint)

    def _charged(self, value: object) -> object:
        """Charge a value just made or copied into the answer, and return it."""
        if isinstance(value, str | dict | list):
            self._spend(_json_size(value) - 1, closing=1)
        else:
            self._spend(_json_size(value))
        return value

    def where(self) -> str:
        """Name the place in the value being built, as a JSON path."""
        return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)

    def _step(self) -> None:
        """Spend one step of the budget, refusing the schema when none are left."""
        if not _spend_steps(self.budget):
            raise SchemaRefused(
                f"building a value for it takes more than {MAX_BUILD_STEPS:,} steps "
                f"(at {self.where()})"
            )

    def _spend(self, chars: int, closing: int = 0) -> None:
        """Charge characters of the answer: stop at `truncate_after`, refuse past the budget.

        `closing` characters (a closing quote or bracket) count for the budget but not for the
        room: a value cut short writes them where the whole value goes on.
        """
        self.budget.chars -= chars + closing
        if self.budget.chars < 0:
            raise SchemaRefused(
                f"its value would be longer than the {MAX_ANSWER_CHARS:,} characters an answer "
                f"may have (at {self.where()})"
            )
        if self.room is not None:
            self.room -= chars
            self.stopped = self.stopped or self.room < 0

    def _text_limit(self) -> int:
        """Return how long a string may get before it overruns the room or the budget."""
        room = self.budget.chars if self.room is None else min(self.room, self.budget.chars)
        return max(room, 0) + 1

    def _copied(self, value: object) -> object:
        """Copy a const/enum value into the answer."""
        self._charged(value)
        return copy.deepcopy(value) if isinstance(value, dict | list) else value

    def _mentions_ref(self, schema: object) -> bool:
        """Tell whether a schema contains a $ref anywhere (so it may recurse); memoised."""
        key = id(schema)
        if key not in self._ref_memo:
            self._ref_memo[key] = (schema, bool(_refs_in(schema)))
        return self._ref_memo[key][1]

    def check_finite(self) -> None:
        """Refuse a schema whose required structure recurses through $ref without end."""
        known = self.budget.ref_ranks.get(id(self.root))
        if known is None:
            self.ref_ranks = self._rank_refs()
            self.budget.ref_ranks[id(self.root)] = (self.root, self.ref_ranks)
        else:
            self.ref_ranks = known[1]
        self._rank_memo = {}
        if self._rank(self.root, 0) == _ENDLESS:
            endless = [ref for ref, rank in self.ref_ranks.items() if rank == _ENDLESS]
            raise SchemaRefused(
                "it has no finite instance: its required structure recurses without end through "
                f"$ref {', '.join(repr(r) for r in endless[:3])} (for example a required array "
                "with minItems >= 1 of the schema itself, and no branch that stops)"
            )

    def _rank_refs(self) -> dict[str, float]:
        """Rank the root's $refs by how many ref hops their minimal value needs (a fixpoint)."""
        pending = sorted(_refs_in(self.root))
        self.ref_ranks = dict.fromkeys(pending, _ENDLESS)
        changed = True
        while changed:  # least fixpoint: a ref is finite once its target is, given the others
            changed = False
            self._rank_memo = {}
            for ref in pending:
                if self.ref_ranks[ref] == _ENDLESS:
                    rank = self._rank(self._lookup(ref), 0)
                    if rank != _ENDLESS:
                        self.ref_ranks[ref] = rank + 1
                        changed = True
        return self.ref_ranks

    def _rank(self, schema: object, depth: int) -> float:
        """Count the ref hops the minimal value of `schema` needs (_ENDLESS: never finite)."""
        if not isinstance(schema, dict):
            return 0
        if depth > MAX_SCHEMA_DEPTH:
            return _ENDLESS
        key = id(schema)
        if key not in self._rank_memo:
            self._step()
            self._rank_memo[key] = (schema, self._rank_uncached(schema, depth))
        return self._rank_memo[key][1]

    def _rank_uncached(self, schema: Schema, depth: int) -> float:
        """Mirror the minimal build: const/enum stop, anyOf takes its best branch, and so on."""
        ref = schema.get("$ref")
        rank = self.ref_ranks.get(ref, _ENDLESS) if isinstance(ref, str) else 0
        if "const" in schema or (isinstance(schema.get("enum"), list) and schema["enum"]):
            return rank
        members = schema.get("allOf") if isinstance(schema.get("allOf"), list) else []
        ranks = [rank, *(self._rank(m, depth + 1) for m in members)]
        for keyword in ("anyOf", "oneOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and branches:
                return max([*ranks, min(self._rank(b, depth + 1) for b in branches)])
        parts = self._required_parts(schema)
        return max([*ranks, *(self._rank(sub, depth + 1) for sub in parts)])

    def _required_parts(self, schema: Schema) -> list[object]:
        """List the subschemas a minimal value of this schema must contain."""
        kind = self._choose_type(schema, minimal=True)
        if kind == "array":
            low = schema.get("minItems", 0)
            low = low if isinstance(low, int) else 0
            prefix = schema.get("prefixItems")
            prefix = prefix if isinstance(prefix, list) else []
            items = schema.get("items", {})
            tail = [items] if low > len(prefix) and items is not False else []
            return [*prefix[:low], *tail]
        if kind == "object":
            props = schema.get("properties")
            props = props if isinstance(props, dict) else {}
            required = schema.get("required")
            required = required if isinstance(required, list) else []
            extra = schema.get("additionalProperties", True)
            extra = extra if isinstance(extra, dict) else {}
            parts = [props.get(name, extra) for name in required if isinstance(name, str)]
            wanted = schema.get("minProperties", 0)
            if isinstance(wanted, int) and wanted > len(parts):
                parts.append(extra)
            return parts
        return []

    def _resolve(self, schema: object, refs: tuple[str, ...]) -> tuple[Schema, tuple[str, ...]]:
        """Follow $ref chains, merging sibling keywords over the target."""
        hops = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and hops < 32:
            ref = schema["$ref"]
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            target = self._lookup(ref)
            target_dict = target if isinstance(target, dict) else {}
            schema = _merge(target_dict, siblings) if siblings else target_dict
            refs = (*refs, ref)
            hops += 1
        if not isinstance(schema, dict):
            return {}, refs
        return schema, refs

    def _lookup(self, ref: str) -> object:
        """Resolve a local JSON pointer such as "#/$defs/Node" (remote refs give {})."""
        if not ref.startswith("#"):
            return {}
        node: object = self.root
        for raw in urllib.parse.unquote(ref[1:]).split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node

    def _flatten(self, schema: Schema, refs: tuple[str, ...], hops: int = 0) -> Schema:
        """Fold allOf members (after resolving their refs) into one schema."""
        base = {k: v for k, v in schema.items() if k != "allOf"}
        for member in schema.get("allOf", []):
            resolved, _ = self._resolve(member, refs)
            if "allOf" in resolved and hops < 16:
                resolved = self._flatten(resolved, refs, hops + 1)
            base = _merge(base, resolved)
        return base

    def _pick_enum(self, schema: Schema, minimal: bool) -> object:
        """Pick an enum value that also fits any `type`; minimal mode prefers null."""
        values = [v for v in schema["enum"] if _type_allows(schema.get("type"), v)]
        values = values or schema["enum"]
        if minimal and None in values:
            return None
        return self.rng.choice(values)

    def _build_choice(
        self,
        schema: Schema,
        keyword: str,
        depth: int,
        refs: tuple[str, ...],
        hint: str,
        minimal: bool,
    ) -> object:
        """Build from one branch of anyOf/oneOf (merged with the sibling keywords)."""
        branches: list[object] = list(schema[keyword])
        siblings = {k: v for k, v in schema.items() if k != keyword}
        fallback: object = None
        before = self._snapshot()
        for attempt in range(4):
            for index in self._branch_order(branches, refs, minimal):
                branch, branch_refs = self._resolve(branches[index], refs)
                merged = _merge(siblings, branch) if siblings else branch
                value = self.build(merged, depth=depth + 1, refs=branch_refs, hint=hint)
                if self.stopped:
                    return value
                if attempt == 0 and fallback is None:
                    fallback = value
                others = [b for i, b in enumerate(branches) if i != index]
                if keyword == "anyOf" or not any(self._could_match(value, b) for b in others):
                    return value
                self._restore(before)  # a value not kept takes no room in the answer
        return self._charged(fallback)

    def _snapshot(self) -> tuple[int | None, int, bool]:
        """Remember the room and characters left, to take back a value that is not kept."""
        return self.room, self.budget.chars, self.stopped

    def _restore(self, snapshot: tuple[int | None, int, bool]) -> None:
        """Take back the characters of values built since `snapshot` (their steps stay spent)."""
        self.room, self.budget.chars, self.stopped = snapshot

    def _branch_order(
        self, branches: list[object], refs: tuple[str, ...], minimal: bool
    ) -> list[int]:
        """Order branch indexes to try: seeded in normal mode, non-recursive first when minimal."""
        indexes = list(range(len(branches)))
        resolved = [self._resolve(b, refs)[0] for b in branches]

        def is_null(i: int) -> bool:
            return resolved[i].get("type") == "null"

        if minimal:
            mentions = [self._mentions_ref(b) for b in branches]
            ranks = [self._rank(branches[i], 0) if mentions[i] else 0 for i in indexes]
            return sorted(indexes, key=lambda i: (ranks[i], mentions[i], not is_null(i)))
        self.rng.shuffle(indexes)
        return sorted(indexes, key=is_null)

    def _could_match(self, value: object, branch: object) -> bool:
        """Cheap check whether `value` might also satisfy `branch` (type/const/enum/required)."""
        schema, _ = self._resolve(branch, ())
        if "const" in schema and schema["const"] != value:
            return False
        if isinstance(schema.get("enum"), list) and value not in schema["enum"]:
            return False
        if not _type_allows(schema.get("type"), value):
            return False
        if isinstance(value, dict):
            required = schema.get("required", [])
            if isinstance(required, list) and any(k not in value for k in required):
                return False
            props = schema.get("properties", {})
            if schema.get("additionalProperties") is False and isinstance(props, dict):
                return all(k in props for k in value)
        return True

    def _choose_type(self, schema: Schema, minimal: bool) -> str:
        """Pick the JSON type to emit (declared, or inferred from the keywords present)."""
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        names = [t for t in declared if isinstance(t, str)] if isinstance(declared, list) else []
        if names:
            if minimal:
                order = {name: rank for rank, name in enumerate(_TYPE_ORDER_MINIMAL)}
                return min(names, key=lambda name: order.get(name, len(order)))
            concrete = [t for t in names if t != "null"] or names
            return self.rng.choice(concrete)
        if any(k in schema for k in ("properties", "required", "additionalProperties")):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
            return "number"
        return "string"

    def _object(
        self, schema: Schema, depth: int, refs: tuple[str, ...], minimal: bool
    ) -> dict[str, object]:
        """Emit every property (only required ones when minimal), then pad to minProperties."""
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        extra = schema.get("additionalProperties", True)
        out: dict[str, object] = {}
        self._spend(1, closing=1)
        for name, sub in props.items():
            if minimal and name not in required:
                continue
            self._member(out, name, sub, depth, refs, name)
        for name in required:
            if name not in out:
                sub = extra if isinstance(extra, dict) else {}
                self._member(out, name, sub, depth, refs, name)
        wanted = schema.get("minProperties", 0)
        if not props and isinstance(extra, dict) and not minimal:
            wanted = max(wanted, 1)
        counter = 1
        while extra is not False and len(out) < wanted and counter < 1000:
            key = f"key_{counter}"
            counter += 1
            if key not in out:
                sub = extra if isinstance(extra, dict) else {}
                self._member(out, key, sub, depth, refs, "value")
        return out

    def _member(
        self,
        out: dict[str, object],
        name: str,
        sub: object,
        depth: int,
        refs: tuple[str, ...],
        hint: str,
    ) -> None:
        """Build one property into `out` (nothing once the value has reached its room)."""
        if self.stopped:
            return
        self._spend(len(name) + (3 if not out else 4))
        self.path.append(name)
        out[name] = self.build(sub, depth=depth + 1, refs=refs, hint=hint)
        self.path.pop()

    def _array(
        self, schema: Schema, depth: int, refs: tuple[str, ...], hint: str, minimal: bool
    ) -> list[object]:
        """Emit minItems..maxItems elements (1-3 by default, minItems when minimal)."""
        low = schema.get("minItems", 0)
        low = low if isinstance(low, int) else 0
        high = schema.get("maxItems")
        high = high if isinstance(high, int) else None
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items", {})
        if minimal:
            count = low
        else:
            start = max(low, 1)
            count = self.rng.randint(start, start + 2)
        if high is not None:
            count = min(count, high)
        if items is False:
            count = min(count, len(prefix))
        count = max(count, 0)
        needed = 2 * min(count, low) + 1  # "[]" plus one character and a comma per item
        if self.room is None and needed > MAX_ANSWER_CHARS:
            raise self._too_long("minItems", low, needed)
        unique = schema.get("uniqueItems") is True
        seen: set[str] = set()
        out: list[object] = []
        self._spend(1, closing=1)
        for index in range(count):
            if self.stopped:
                break
            sub = prefix[index] if index < len(prefix) else items
            before = self._snapshot()
            self._spend(1 if out else 0)
            self.path.append(index)
            value = self.build(sub, depth=depth + 1, refs=refs, hint=hint)
            attempts = 0
            while unique and not self.stopped and _canonical(value) in seen and attempts < 20:
                self._restore(before)
                self._spend(1 if out else 0)
                value = self.build(sub, depth=depth + 1, refs=refs, hint=hint)
                attempts += 1
            self.path.pop()
            if unique and not self.stopped and _canonical(value) in seen and len(out) >= low:
                self._restore(before)
                break
            if unique:
                seen.add(_canonical(value))
            out.append(value)
        return out

    def _too_long(self, keyword: str, value: object, chars: int) -> SchemaRefused:
        """Refuse a size keyword whose minimum cannot fit in an answer."""
        return SchemaRefused(
            f"'{keyword}' {value} (at {self.where()}) needs at least {chars:,} characters, "
            f"more than the {MAX_ANSWER_CHARS:,} an answer may have"
        )

    def _string(self, schema: Schema, hint: str) -> str:
        """Emit a string honouring format, pattern and length limits."""
        low = schema.get("minLength", 0)
        low = low if isinstance(low, int) else 0
        high = schema.get("maxLength")
        high = high if isinstance(high, int) else None
        fmt = schema.get("format")
        maker = _FORMATS.get(fmt) if isinstance(fmt, str) else None
        if maker is not None:
            return maker(self.rng)
        if self.room is None and low + 2 > MAX_ANSWER_CHARS:
            raise self._too_long("minLength", low, low + 2)
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:  # built whole (within the budget) so a cut answer starts as the whole one
                made = _from_pattern(pattern, self.rng, (low, high), self.budget)
            except SchemaRefused as refused:
                raise SchemaRefused(f"{refused} (at {self.where()})") from None
            if made is not None:
                return made
        low = min(low, self._text_limit())  # longer cannot fit: the answer is cut or refused
        text = self._words(hint)
        while len(text) < low:
            text += " " + self.rng.choice(_WORDS)
        if high is not None and len(text) > high:
            text = text[:high].rstrip()
        return text.ljust(low, "x")

    def _words(self, hint: str) -> str:
        """Make a short readable text, led by the property name when there is one."""
        first = hint.replace("_", " ").strip() if hint else self.rng.choice(_WORDS)
        return f"{first} {self.rng.choice(_WORDS)}"

    def _integer(self, schema: Schema) -> int:
        """Emit an integer within the bounds and on the multipleOf grid."""
        low, high = _integer_bounds(schema)
        step_value = schema.get("multipleOf")
        step = 1
        if is_number(step_value) and step_value > 0:
            # an integer is a multiple of p/q (in lowest terms) exactly when it is a multiple of p
            step = Fraction(str(step_value)).numerator
        k_low, k_high = -((-low) // step), high // step
        if k_low > k_high:
            return k_low * step
        first: int | None = None
        for k in self._spread(k_low, k_high):
            first = k if first is None else first
            value = k * step
            if not is_number(step_value) or _multiple_ok(value, step_value):
                return value
        return (first or 0) * step

    def _number(self, schema: Schema) -> float:
        """Emit a float within the (possibly exclusive) bounds and on the multipleOf grid."""
        low, low_open, high, high_open = _number_bounds(schema)
        step_value = schema.get("multipleOf")
        if is_number(step_value) and step_value > 0:
            step = Decimal(str(step_value))
            k_low = math.ceil(Decimal(repr(low)) / step)
            k_high = math.floor(Decimal(repr(high)) / step)
            if low_open and k_low * step == Decimal(repr(low)):
                k_low += 1
            if high_open and k_high * step == Decimal(repr(high)):
                k_high -= 1
            if k_low > k_high:
                return float(k_low * step)
            for k in self._spread(k_low, k_high):
                value = float(k * step)
                fits = _inside(value, low, low_open, high, high_open)
                if fits and _multiple_ok(value, step_value):
                    return value
            return float(k_low * step)
        value = round(self.rng.uniform(low, high), 2)
        if _inside(value, low, low_open, high, high_open):
            return value
        middle = (low + high) / 2
        return middle if _inside(middle, low, low_open, high, high_open) else low

    def _spread(self, k_low: int, k_high: int) -> Iterator[int]:
        """Yield up to 64 grid indexes in [k_low, k_high], the first one seeded."""
        first = self.rng.randint(k_low, k_high)
        yield first
        yield from (k for k in range(k_low, min(k_high, k_low + 62) + 1) if k != first)


def _inside(value: float, low: float, low_open: bool, high: float, high_open: bool) -> bool:
    """Tell whether a number lies within bounds that may be exclusive."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    return above and below


def _check_finite_numbers(schema: Schema) -> None:
    """Refuse numeric keywords that are not finite doubles (1e400 reads as infinity)."""
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        value = schema.get(key)
        if is_number(value) and not fits_double(value):
            raise SchemaRefused(f"'{key}' must be a finite number that fits in a double")


def _integer_bounds(schema: Schema) -> tuple[int, int]:
    """Turn minimum/maximum/exclusive* (2020-12 numbers or draft-4 booleans) into int bounds."""
    _check_finite_numbers(schema)
    low: int | None = None
    high: int | None = None
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if is_number(minimum):
        low = math.floor(minimum) + 1 if ex_min is True else math.ceil(minimum)
    if is_number(ex_min):
        bound = math.floor(ex_min) + 1
        low = bound if low is None else max(low, bound)
    if is_number(maximum):
        high = math.ceil(maximum) - 1 if ex_max is True else math.floor(maximum)
    if is_number(ex_max):
        bound = math.ceil(ex_max) - 1
        high = bound if high is None else min(high, bound)
    if low is None and high is None:
        return 0, 100
    if low is None:
        return high - 100, high
    if high is None:
        return low, low + 100
    return low, high


def _number_bounds(schema: Schema) -> tuple[float, bool, float, bool]:
    """Turn minimum/maximum/exclusive* into (low, low_open, high, high_open)."""
    _check_finite_numbers(schema)
    low: float | None = None
    high: float | None = None
    low_open = high_open = False
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if is_number(minimum):
        low, low_open = float(minimum), ex_min is True
    if is_number(ex_min) and (low is None or ex_min >= low):
        low, low_open = float(ex_min), True
    if is_number(maximum):
        high, high_open = float(maximum), ex_max is True
    if is_number(ex_max) and (high is None or ex_max <= high):
        high, high_open = float(ex_max), True
    if low is None and high is None:
        return 0.0, False, 100.0, False
    if low is None:
        return high - 100.0, False, high, high_open
    if high is None:
        return low, low_open, low + 100.0, False
    return low, low_open, high, high_open


def _canonical(value: object) -> str:
    """Serialise a JSON value canonically (for uniqueItems)."""
    return json.dumps(value, sort_keys=True, default=repr)


def _date(rng: AnswerRandom) -> dt.date:
    """Pick a date in 2020-2026."""
    return dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(2400))


def _clock(rng: AnswerRandom) -> str:
    """Pick a wall-clock time HH:MM:SS."""
    return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


_FORMATS: dict[str, Callable[[AnswerRandom], str]] = {
    "date": lambda rng: _date(rng).isoformat(),
    "date-time": lambda rng: f"{_date(rng).isoformat()}T{_clock(rng)}Z",
    "time": lambda rng: f"{_clock(rng)}Z",
    "duration": lambda rng: f"P{rng.randint(1, 30)}DT{rng.randint(1, 23)}H",
    "email": lambda rng: f"{rng.choice(_WORDS)}{rng.randint(1, 999)}@example.com",
    "idn-email": lambda rng: f"{rng.choice(_WORDS)}{rng.randint(1, 999)}@example.com",
    "hostname": lambda rng: f"{rng.choice(_WORDS)}{rng.randint(1, 99)}.example.com",
    "idn-hostname": lambda rng: f"{rng.choice(_WORDS)}{rng.randint(1, 99)}.example.com",
    "ipv4": lambda rng: f"192.0.2.{rng.randint(1, 254)}",
    "ipv6": lambda rng: f"2001:db8::{rng.randint(1, 0xFFFF):x}",
    "uri": lambda rng: f"https://example.com/{rng.choice(_WORDS)}/{rng.randint(1, 9999)}",
    "uri-reference": lambda rng: f"https://example.com/{rng.choice(_WORDS)}",
    "iri": lambda rng: f"https://example.com/{rng.choice(_WORDS)}/{rng.randint(1, 9999)}",
    "url": lambda rng: f"https://example.com/{rng.choice(_WORDS)}/{rng.randint(1, 9999)}",
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
}


class _OutOfSteps(Exception):
    """The request's budget ran out of steps while a pattern's string was built or checked."""


@dataclass(frozen=True)
class _PatternPlan:
    """A weighed `pattern`: the form rstr builds from, and how far a built string is checked."""

    buildable: str  # the pattern with its lookarounds building nothing (see regex_outline)
    compiled: re.Pattern[str]
    check_limit: int | None  # longest string worth checking with re.search; None: any length


@lru_cache(maxsize=_PATTERN_CACHE_SIZE)
def _pattern_plan(pattern: str) -> _PatternPlan | str | None:
    """Read and weigh a pattern once: a plan, a refusal (str), or None if it is no regex."""
    try:
        compiled = re.compile(pattern)
        shape = outline(pattern)
        re.compile(shape.buildable)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    if shape.unbuilt and shape.nested:
        return (
            f"'pattern' {pattern[:64]!r} cannot be generated within bounds: it repeats a "
            "repetition (or alternation) and also has a lookaround, backreference, word "
            "boundary or an anchor inside it, so checking a generated string could take "
            "exponential time"
        )
    if shape.longest > MAX_ANSWER_CHARS:
        return (
            f"'pattern' {pattern[:64]!r} can build strings longer than the "
            f"{MAX_ANSWER_CHARS:,} characters an answer may have"
        )
    if not (shape.unbuilt or shape.nested):
        return _PatternPlan(shape.buildable, compiled, None)  # built text matches: quick to check
    # a failed check backtracks through every split of the text among the repeats
    limit = int(_PATTERN_CHECK_COST ** (1 / (shape.degree + 2)))
    return _PatternPlan(shape.buildable, compiled, max(limit, 1))


def _from_pattern(
    pattern: str, rng: AnswerRandom, lengths: tuple[int, int | None], budget: GenerationBudget
) -> str | None:
    """Generate a string that `re.search(pattern)` accepts, within `lengths` if possible.

    Strings are at most as long as the characters left in the budget (a longer one comes back
    cut, for the caller to cut or refuse the answer). Building and checking spend the budget's
    steps; a pattern too long or too costly to generate raises SchemaRefused.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SchemaRefused(
            f"'pattern' is {len(pattern):,} characters long, more than the "
            f"{MAX_PATTERN_CHARS:,} the local models accept"
        )
    plan = _pattern_plan(pattern)
    if plan is None:
        return None
    if isinstance(plan, str):
        raise SchemaRefused(plan)
    try:
        return _attempts(plan, _PatternDraws(rng.getrandbits(64), budget), lengths, budget)
    except _OutOfSteps:
        raise SchemaRefused(
            f"'pattern' {pattern[:64]!r} needs more than the {MAX_BUILD_STEPS:,} steps a "
            "request may spend on its values"
        ) from None


def _attempts(
    plan: _PatternPlan,
    draws: _PatternDraws,
    lengths: tuple[int, int | None],
    budget: GenerationBudget,
) -> str | None:
    """Build and check strings for a plan until one fits `lengths` (else one that matches)."""
    low, high = lengths
    limit = budget.chars + 1
    builder = rstr.Rstr(draws)
    matching: str | None = None
    for _ in range(_PATTERN_ATTEMPTS):
        try:
            text = builder.xeger(plan.buildable)
        except RecursionError:
            return None
        except (IndexError, KeyError):  # a class with no printable character; a group not built
            continue
        if not _spend_steps(budget, len(text) + 1):  # writing and checking read it at least once
            raise _OutOfSteps
        if len(text) >= limit:
            return text[:limit]
        if plan.check_limit is not None and len(text) > plan.check_limit:
            continue
        if not plan.compiled.search(text):
            continue
        if len(text) >= low and (high is None or len(text) <= high):
            return text
        matching = matching or text
    return matching


class _PatternDraws(random.Random):
    """The random stream rstr builds a pattern's strings from, spending the request's steps.

    rstr draws each repeat count as randint(low, min(high, 100)) and everything else with
    choice(). Counts here stay within `repeat_counts` (low to low+3), as the outline reckons.
    Characters are picked in their sorted order, since rstr lists a negated class from a set,
    whose order changes from process to process; lone surrogates are never picked, as no UTF-8
    answer can carry one. A count costs a step and one more for each time it repeats; a choice
    a step and one more per `_CANDIDATES_PER_STEP` candidates.
    """

    def __init__(self, seed: int, budget: GenerationBudget) -> None:
        """Seed the stream and keep the budget its draws spend."""
        super().__init__(seed)
        self.budget = budget

    def randint(self, a: int, b: int) -> int:
        """Draw how many times rstr repeats an item."""
        low, high = repeat_counts(a, b)
        count = super().randint(low, high) if high > low else low
        self._spend(1 + count)
        return count

    def choice(self, seq: Sequence[Any]) -> Any:
        """Pick one alternative, or one character (in a fixed order, never a lone surrogate)."""
        self._spend(1 + len(seq) // _CANDIDATES_PER_STEP)
        if seq and isinstance(seq[0], str):
            seq = sorted(c for c in seq if not _FIRST_SURROGATE <= c <= _LAST_SURROGATE)
        return super().choice(seq)

    def _spend(self, steps: int) -> None:
        """Spend steps of the request's budget, stopping the build when none are left."""
        if not _spend_steps(self.budget, steps):
            raise _OutOfSteps
