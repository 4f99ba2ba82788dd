"""Build a deterministic value that validates against a JSON schema (structured-outputs subset)."""

import copy
import datetime as dt
import json
import math
import random
import re
import re._parser as _re_parser  # private but stable in 3.11+; used to walk `pattern` regexes
import urllib.parse
import uuid
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

__all__ = ["instance_for"]

Schema = dict[str, Any]

# Below this depth (or once a $ref repeats on the path) the builder goes minimal: it picks
# null/non-recursive branches, only required properties and minItems-long arrays.
_SOFT_DEPTH = 10
_REF_REPEATS = 2
_HARD_DEPTH = 64

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


def instance_for(schema: dict, *, seed: int) -> object:
    """Return a value valid against `schema`, chosen deterministically from `seed`."""
    return _Builder(schema, seed).build(schema, depth=0, refs=(), hint="")


def _json_type(value: object) -> str:
    """Name the JSON type of a Python value ("integer" for whole ints only)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_allows(declared: object, value: object) -> bool:
    """Tell whether a `type` keyword value admits `value`."""
    if declared is None:
        return True
    names = declared if isinstance(declared, list) else [declared]
    actual = _json_type(value)
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
        elif key in _LOWER_BOUNDS and _is_number(value) and _is_number(out[key]):
            out[key] = max(out[key], value)
        elif key in _UPPER_BOUNDS and _is_number(value) and _is_number(out[key]):
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


def _is_number(value: object) -> bool:
    """Tell whether a value is an int or float but not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mentions_ref(schema: object) -> bool:
    """Tell whether a schema contains a $ref anywhere (so it may recurse)."""
    if isinstance(schema, dict):
        return "$ref" in schema or any(_mentions_ref(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_mentions_ref(v) for v in schema)
    return False


def _multiple_ok(value: float, step: float) -> bool:
    """Check multipleOf the way the `jsonschema` package does (float quotient must be whole)."""
    if isinstance(step, float):
        quotient = value / step
        return math.isfinite(quotient) and int(quotient) == quotient
    return value % step == 0


class _Builder:
    """Walks one schema, drawing every choice from one seeded random stream."""

    def __init__(self, root: object, seed: int) -> None:
        """Keep the root (for $ref lookups) and seed the random stream."""
        self.root = root
        self.rng = random.Random(seed)

    def build(self, schema: object, *, depth: int, refs: tuple[str, ...], hint: str) -> object:
        """Return a value valid against `schema`."""
        if depth > _HARD_DEPTH:
            return None
        schema, refs = self._resolve(schema, refs)
        minimal = depth >= _SOFT_DEPTH or any(refs.count(r) >= _REF_REPEATS for r in refs)
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return copy.deepcopy(self._pick_enum(schema, minimal))
        if isinstance(schema.get("allOf"), list):
            return self.build(self._flatten(schema, refs), depth=depth + 1, refs=refs, hint=hint)
        for keyword in ("anyOf", "oneOf"):
            if isinstance(schema.get(keyword), list) and schema[keyword]:
                return self._build_choice(schema, keyword, depth, refs, hint, minimal)
        kind = self._choose_type(schema, minimal)
        if kind == "null":
            return None
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "array":
            return self._array(schema, depth, refs, hint, minimal)
        if kind == "object":
            return self._object(schema, depth, refs, minimal)
        return self._string(schema, hint)

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
        for attempt in range(4):
            for index in self._branch_order(branches, refs, minimal):
                branch, branch_refs = self._resolve(branches[index], refs)
                merged = _merge(siblings, branch) if siblings else branch
                value = self.build(merged, depth=depth + 1, refs=branch_refs, hint=hint)
                if attempt == 0 and fallback is None:
                    fallback = value
                others = [b for i, b in enumerate(branches) if i != index]
                if keyword == "anyOf" or not any(self._could_match(value, b) for b in others):
                    return value
        return fallback

    def _branch_order(
        self, branches: list[object], refs: tuple[str, ...], minimal: bool
    ) -> list[int]:
        """Order branch indexes to try: seeded in normal mode, non-recursive first when minimal."""
        indexes = list(range(len(branches)))
        resolved = [self._resolve(b, refs)[0] for b in branches]

        def is_null(i: int) -> bool:
            return resolved[i].get("type") == "null"

        if minimal:
            return sorted(indexes, key=lambda i: (_mentions_ref(branches[i]), not is_null(i)))
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
        for name, sub in props.items():
            if minimal and name not in required:
                continue
            out[name] = self.build(sub, depth=depth + 1, refs=refs, hint=name)
        for name in required:
            if name not in out:
                sub = extra if isinstance(extra, dict) else {}
                out[name] = self.build(sub, depth=depth + 1, refs=refs, hint=name)
        wanted = schema.get("minProperties", 0)
        if not props and isinstance(extra, dict) and not minimal:
            wanted = max(wanted, 1)
        counter = 1
        while extra is not False and len(out) < wanted and counter < 1000:
            key = f"key_{counter}"
            counter += 1
            if key not in out:
                sub = extra if isinstance(extra, dict) else {}
                out[key] = self.build(sub, depth=depth + 1, refs=refs, hint="value")
        return out

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
        unique = schema.get("uniqueItems") is True
        seen: set[str] = set()
        out: list[object] = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items
            value = self.build(sub, depth=depth + 1, refs=refs, hint=hint)
            attempts = 0
            while unique and _canonical(value) in seen and attempts < 20:
                value = self.build(sub, depth=depth + 1, refs=refs, hint=hint)
                attempts += 1
            if unique and _canonical(value) in seen and len(out) >= low:
                break
            seen.add(_canonical(value))
            out.append(value)
        return out

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
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            made = _from_pattern(pattern, self.rng, low, high)
            if made is not None:
                return made
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
        if _is_number(step_value) and step_value > 0:
            # an integer is a multiple of p/q (in lowest terms) exactly when it is a multiple of p
            step = Fraction(str(step_value)).numerator
        k_low, k_high = -((-low) // step), high // step
        if k_low > k_high:
            return k_low * step
        choices = self._spread(k_low, k_high)
        for k in choices:
            value = k * step
            if not _is_number(step_value) or _multiple_ok(value, step_value):
                return value
        return choices[0] * step

    def _number(self, schema: Schema) -> float:
        """Emit a float within the (possibly exclusive) bounds and on the multipleOf grid."""
        low, low_open, high, high_open = _number_bounds(schema)
        step_value = schema.get("multipleOf")
        if _is_number(step_value) and step_value > 0:
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

    def _spread(self, k_low: int, k_high: int) -> list[int]:
        """List up to 64 grid indexes in [k_low, k_high], the first one seeded."""
        first = self.rng.randint(k_low, k_high)
        rest = range(k_low, min(k_high, k_low + 62) + 1)
        return [first, *(k for k in rest if k != first)]


def _inside(value: float, low: float, low_open: bool, high: float, high_open: bool) -> bool:
    """Tell whether a number lies within bounds that may be exclusive."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    return above and below


def _integer_bounds(schema: Schema) -> tuple[int, int]:
    """Turn minimum/maximum/exclusive* (2020-12 numbers or draft-4 booleans) into int bounds."""
    low: int | None = None
    high: int | None = None
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if _is_number(minimum):
        low = math.floor(minimum) + 1 if ex_min is True else math.ceil(minimum)
    if _is_number(ex_min):
        bound = math.floor(ex_min) + 1
        low = bound if low is None else max(low, bound)
    if _is_number(maximum):
        high = math.ceil(maximum) - 1 if ex_max is True else math.floor(maximum)
    if _is_number(ex_max):
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
    low: float | None = None
    high: float | None = None
    low_open = high_open = False
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if _is_number(minimum):
        low, low_open = float(minimum), ex_min is True
    if _is_number(ex_min) and (low is None or ex_min >= low):
        low, low_open = float(ex_min), True
    if _is_number(maximum):
        high, high_open = float(maximum), ex_max is True
    if _is_number(ex_max) and (high is None or ex_max <= high):
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


def _date(rng: random.Random) -> dt.date:
    """Pick a date in 2020-2026."""
    return dt.date(2020, 1, 1) + dt.timedelta(days=rng.randrange(2400))


def _clock(rng: random.Random) -> str:
    """Pick a wall-clock time HH:MM:SS."""
    return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


_FORMATS: dict[str, Callable[[random.Random], str]] = {
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


def _from_pattern(pattern: str, rng: random.Random, low: int, high: int | None) -> str | None:
    """Generate a string that `re.search(pattern)` accepts, within the length limits if possible."""
    try:
        parsed = _re_parser.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    matching: str | None = None
    for _ in range(24):
        try:
            text = _emit(list(parsed), rng, {})
        except (RecursionError, ValueError):
            return None
        if not compiled.search(text):
            continue
        if len(text) >= low and (high is None or len(text) <= high):
            return text
        matching = matching or text
    return matching


def _emit(items: list[tuple[object, object]], rng: random.Random, groups: dict[int, str]) -> str:
    """Emit text for a parsed regex sequence (anchors and lookarounds emit nothing)."""
    out: list[str] = []
    for op, arg in items:
        if op == _re_parser.LITERAL:
            out.append(chr(arg))
        elif op == _re_parser.NOT_LITERAL:
            out.append(next(c for c in "aZ0_-x" if ord(c) != arg))
        elif op == _re_parser.ANY:
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyz"))
        elif op == _re_parser.IN:
            out.append(_pick_in(list(arg), rng))
        elif op == _re_parser.BRANCH:
            out.append(_emit(list(rng.choice(arg[1])), rng, groups))
        elif op == _re_parser.SUBPATTERN:
            group, _, _, sub = arg
            text = _emit(list(sub), rng, groups)
            if group:
                groups[group] = text
            out.append(text)
        elif op in (_re_parser.MAX_REPEAT, _re_parser.MIN_REPEAT, _re_parser.POSSESSIVE_REPEAT):
            low, high, sub = arg
            top = low + 3 if high == _re_parser.MAXREPEAT else min(high, low + 3)
            out.extend(_emit(list(sub), rng, groups) for _ in range(rng.randint(low, top)))
        elif op == _re_parser.ATOMIC_GROUP:
            out.append(_emit(list(arg), rng, groups))
        elif op == _re_parser.GROUPREF:
            out.append(groups.get(arg, ""))
        elif op == _re_parser.GROUPREF_EXISTS:
            group, yes, no = arg
            branch = yes if group in groups else no
            out.append(_emit(list(branch), rng, groups) if branch is not None else "")
        elif op == _re_parser.CATEGORY:
            out.append(_category_char(arg, rng))
    return "".join(out)


def _pick_in(items: list[tuple[object, object]], rng: random.Random) -> str:
    """Pick one character from a parsed character class."""
    if items and items[0][0] == _re_parser.NEGATE:
        rest = items[1:]
        for candidate in "aZq0_-x .":
            if not any(_class_has(candidate, op, arg) for op, arg in rest):
                return candidate
        return "~"
    op, arg = rng.choice(items)
    if op == _re_parser.LITERAL:
        return chr(arg)
    if op == _re_parser.RANGE:
        first, last = arg
        printable_first, printable_last = max(first, 0x21), min(last, 0x7E)
        if printable_first <= printable_last:
            return chr(rng.randint(printable_first, printable_last))
        return chr(first)
    return _category_char(arg, rng)


def _class_has(char: str, op: object, arg: object) -> bool:
    """Tell whether one character-class item contains `char`."""
    if op == _re_parser.LITERAL:
        return ord(char) == arg
    if op == _re_parser.RANGE:
        first, last = arg
        return first <= ord(char) <= last
    if op == _re_parser.CATEGORY:
        return bool(re.fullmatch(_CATEGORY_REGEX.get(str(arg), "(?!)"), char))
    return False


_CATEGORY_REGEX = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


def _category_char(category: object, rng: random.Random) -> str:
    """Pick a character of a regex category such as \\d or \\w."""
    name = str(category)
    if name == "CATEGORY_DIGIT":
        return rng.choice("0123456789")
    if name == "CATEGORY_SPACE":
        return " "
    if name == "CATEGORY_NOT_WORD":
        return "-"
    return rng.choice("abcdefghijklmnopqrstuvwxyz")
