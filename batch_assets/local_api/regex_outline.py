"""The outline of a JSON-schema `pattern` (a Python regex), read without the private `re._parser`.

The outline tells what can make checking a string against the regex slow (repeats in a row,
repeats of repeats, lookarounds), how long a string built from it can get, and gives the form of
it that rstr builds strings from. It reads the regex as `re` does, with the two rewrites `re`
makes of an alternation (a prefix all alternatives share moves out of it; one-character
alternatives become a character class) and with plain `(?:...)` groups melted into their
sequence, so that it weighs what `re` will run. It expects a regex `re.compile` accepted.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, field

from rstr.xeger import STAR_PLUS_LIMIT

__all__ = ["MAX_DEGREE", "RegexOutline", "outline", "repeat_counts"]

MAX_DEGREE = 1000  # degrees are counted up to this, no further
EXTRA_REPEATS = 3  # a built string repeats an item {low,high} low to low+3 times
_UNBOUNDED = sys.maxsize
_QUANTIFIER = re.compile(r"\{(\d*)(,(\d*))?\}")
_WHITESPACE = " \t\n\r\v\f"
_FLAG_LETTERS = "aiLmsux"
_CATEGORIES = {"\\d", "\\D", "\\s", "\\S", "\\w", "\\W"}
_SIMPLE_ESCAPES = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
_ANCHOR_ESCAPES = {"A": "start", "Z": "end", "b": "inner", "B": "inner"}
_HEX_ESCAPE_DIGITS = {"x": 2, "u": 4, "U": 8}
_OCTAL = "01234567"


@dataclass(frozen=True)
class RegexOutline:
    """What the checks and the builder need to know of one regex."""

    degree: int  # variable-count repeats (and alternations) one after another
    nested: bool  # a variable-count repeat of something variable
    unbuilt: bool  # a lookaround, backreference, conditional, boundary or inner anchor
    longest: int  # the most characters one built string can have
    buildable: str  # the regex with lookarounds building nothing, in syntax rstr reads


def repeat_counts(low: int, high: int) -> tuple[int, int]:
    """The fewest and most times a built string repeats an item the regex repeats {low,high}."""
    if high < low:  # rstr caps `high` at STAR_PLUS_LIMIT, which may be below `low`
        return low, low
    return low, min(high, low + EXTRA_REPEATS)


def outline(pattern: str) -> RegexOutline:
    """Outline a regex that `re.compile` accepts (RecursionError when it nests too deeply)."""
    verbose = bool(re.compile(pattern).flags & re.VERBOSE)
    reader = _Reader(pattern, verbose)
    items = reader.read()
    shape = _shape(items, at_start=True, at_end=True)
    groups: dict[int, int] = {}
    for number, body in reader.groups.items():  # in the order they close: inner ones first
        groups[number] = _longest(body, groups)
    return RegexOutline(
        degree=shape.degree,
        nested=shape.nested,
        unbuilt=shape.unbuilt,
        longest=_longest(items, groups),
        buildable=reader.buildable(),
    )


# --- the parsed regex ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Char:
    """One character: a literal, a class, `.` or a category such as \\d."""

    key: object  # what makes two of them the same item, as `re` compares them
    joinable: bool  # a literal or a class that is not negated: alternatives of these join


@dataclass(frozen=True)
class _Anchor:
    """A zero-width position: ^ and \\A ("start"), $ and \\Z ("end"), \\b and \\B ("inner")."""

    place: str
    key: str


@dataclass(frozen=True)
class _Backref:
    """A backreference to a numbered group."""

    group: int


@dataclass(eq=False)
class _Repeat:
    """An item repeated low to high times (never the same item as another)."""

    low: int
    high: int
    item: _Node


@dataclass(eq=False)
class _Branch:
    """An alternation that `re` keeps as one."""

    alternatives: list[list[_Node]]


@dataclass(eq=False)
class _Group:
    """A group: kind "group" (capturing or with flags), "plain", "atomic", "look" or "cond"."""

    kind: str
    body: list[_Node]
    branches: list[list[_Node]] = field(default_factory=list)  # a conditional's yes and no


_Node = _Char | _Anchor | _Backref | _Repeat | _Branch | _Group


@dataclass
class _Frame:
    """A group being read: its kind, its alternatives so far, its verbose flag and number."""

    kind: str
    alternatives: list[list[_Node]]
    verbose: bool
    capture: int | None = None


class _Reader:
    """Reads a regex into nodes, noting the edits that make its buildable form."""

    def __init__(self, pattern: str, verbose: bool) -> None:
        """Start at the first character, with the regex's global verbose flag."""
        self.pattern = pattern
        self.at = 0
        self.stack = [_Frame("top", [[]], verbose)]
        self.edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
        self.groups: dict[int, list[_Node]] = {}  # capturing group number -> body, as closed
        self.names: dict[str, int] = {}
        self.opened = 0

    def read(self) -> list[_Node]:
        """Read the whole regex and return its top-level sequence."""
        while self.at < len(self.pattern):
            self._token()
        return _alternation(self.stack[0].alternatives)

    def buildable(self) -> str:
        """The regex with the edits applied."""
        parts, last = [], 0
        for start, end, replacement in sorted(self.edits):
            parts += [self.pattern[last:start], replacement]
            last = end
        return "".join([*parts, self.pattern[last:]])

    def _token(self) -> None:
        """Read one token at `self.at`."""
        frame = self.stack[-1]
        char = self.pattern[self.at]
        if frame.verbose and char in _WHITESPACE:
            self.at += 1
        elif frame.verbose and char == "#":
            self._skip_comment()
        elif char == "|":
            frame.alternatives.append([])
            self.at += 1
        elif char == "(":
            self._open()
        elif char == ")":
            self._close()
        elif char in "*+?" or (char == "{" and self._quantifier_here()):
            self._repeat()
        else:
            frame.alternatives[-1].append(self._atom())

    def _skip_comment(self) -> None:
        """Skip a verbose comment up to its line's end (an escaped line break does not end it)."""
        at = self.at + 1
        while at < len(self.pattern) and self.pattern[at] != "\n":
            at += 2 if self.pattern[at] == "\\" else 1
        self.at = at + 1

    def _atom(self) -> _Node:
        """Read a character, class, anchor or escape."""
        char = self.pattern[self.at]
        if char == "[":
            return self._class()
        if char == "\\":
            return self._escape()
        self.at += 1
        if char == "^":
            return _Anchor("start", "^")
        if char == "$":
            return _Anchor("end", "$")
        if char == ".":
            return _Char(".", joinable=False)
        return _Char(ord(char), joinable=True)

    def _class(self) -> _Char:
        """Read a character class [...]; `re` reads a one-literal class as that literal."""
        start = self.at
        at = start + 1
        negated = self.pattern[at] == "^"
        at += negated
        first = True
        while first or self.pattern[at] != "]":
            at += 2 if self.pattern[at] == "\\" else 1
            first = False
        self.at = at + 1
        inside = self.pattern[start + 1 + negated : at]
        literal = _literal_code(inside)
        if literal is not None:  # [a] is the literal a, [^a] its negation
            return _Char(("not", literal) if negated else literal, joinable=not negated)
        if not negated and inside in _CATEGORIES:
            return _Char(inside, joinable=True)  # [\d] is \d
        return _Char(self.pattern[start : self.at], joinable=not negated)

    def _escape(self) -> _Node:
        """Read an escape outside a class: anchor, category, backreference or literal."""
        start = self.at
        letter = self.pattern[start + 1]
        self.at = start + 2
        if letter in _ANCHOR_ESCAPES:
            return _Anchor(_ANCHOR_ESCAPES[letter], "\\" + letter)
        if "\\" + letter in _CATEGORIES:
            return _Char("\\" + letter, joinable=True)
        if letter in _HEX_ESCAPE_DIGITS:
            self.at += _HEX_ESCAPE_DIGITS[letter]
        elif letter == "N":
            self.at = self.pattern.index("}", self.at) + 1
        elif letter == "0":
            while self.at < start + 4 and self._next_in(_OCTAL):
                self.at += 1
        elif letter in "123456789":
            return self._numbered_escape(start)
        return _Char(_literal_code(self.pattern[start : self.at]), joinable=True)

    def _numbered_escape(self, start: int) -> _Node:
        """Read \\1 to \\99 (a backreference) or three octal digits (a literal)."""
        if self._next_in("0123456789"):
            self.at += 1
            octal = self.pattern[start + 1] in _OCTAL and self.pattern[self.at - 1] in _OCTAL
            if octal and self._next_in(_OCTAL):
                self.at += 1
                return _Char(int(self.pattern[start + 1 : self.at], 8), joinable=True)
        return _Backref(int(self.pattern[start + 1 : self.at]))

    def _next_in(self, characters: str) -> bool:
        """Tell whether the character at `self.at` is one of `characters`."""
        return self.at < len(self.pattern) and self.pattern[self.at] in characters

    def _quantifier_here(self) -> bool:
        """Tell whether the `{` at `self.at` opens a quantifier (else it is a literal)."""
        found = _QUANTIFIER.match(self.pattern, self.at)
        return found is not None and (found.group(1) != "" or found.group(2) is not None)

    def _repeat(self) -> None:
        """Read a quantifier and its lazy or possessive mark, repeating the previous item."""
        char = self.pattern[self.at]
        if char == "{":
            found = _QUANTIFIER.match(self.pattern, self.at)
            assert found is not None
            low = int(found.group(1) or 0)
            high = low if found.group(2) is None else int(found.group(3) or _UNBOUNDED)
            self.at = found.end()
        else:
            low, high = {"*": (0, _UNBOUNDED), "+": (1, _UNBOUNDED), "?": (0, 1)}[char]
            self.at += 1
        if self._next_in("?"):
            self.at += 1
        elif self._next_in("+"):  # possessive: rstr knows only greedy and lazy repeats
            self.edits.append((self.at, self.at + 1, ""))
            self.at += 1
        sequence = self.stack[-1].alternatives[-1]
        sequence[-1] = _Repeat(low, high, sequence[-1])

    def _open(self) -> None:
        """Read the opening of a group (or a whole comment, global flags or named backref)."""
        start = self.at
        verbose = self.stack[-1].verbose
        if self.pattern.startswith("(?", start):
            self._open_extension(start, verbose)
            return
        self.at += 1
        self._push("group", verbose, capture=True)

    def _open_extension(self, start: int, verbose: bool) -> None:
        """Read the opening of a `(?...` construct."""
        rest = self.pattern[start + 2 :]
        if rest.startswith("#"):
            self.at = self.pattern.index(")", start) + 1
        elif rest.startswith("P="):
            end = self.pattern.index(")", start)
            name = self.pattern[start + 4 : end]
            self.stack[-1].alternatives[-1].append(_Backref(self.names[name]))
            self.at = end + 1
        elif rest.startswith("P<"):
            end = self.pattern.index(">", start)
            self.at = end + 1
            self._push("group", verbose, capture=True, name=self.pattern[start + 4 : end])
        elif rest.startswith(":"):
            self.at = start + 3
            self._push("plain", verbose)
        elif rest.startswith(("=", "!", "<=", "<!")):
            self.at = start + (4 if rest.startswith("<") else 3)
            self.edits.append((start, self.at, "(?:(?:"))
            self._push("look", verbose)
        elif rest.startswith(">"):
            self.at = start + 3
            self.edits.append((start, self.at, "(?:"))
            self._push("atomic", verbose)
        elif rest.startswith("("):
            self.at = self.pattern.index(")", start + 3) + 1
            self.edits.append((start, self.at, "(?:"))
            self._push("cond", verbose)
        else:
            self._open_flags(start, verbose)

    def _open_flags(self, start: int, verbose: bool) -> None:
        """Read `(?flags)` (global: nothing to keep) or `(?flags-flags:` (a group)."""
        at = start + 2
        added = removed = ""
        while self.pattern[at] in _FLAG_LETTERS:
            added += self.pattern[at]
            at += 1
        if self.pattern[at] == "-":
            at += 1
            while self.pattern[at] in _FLAG_LETTERS:
                removed += self.pattern[at]
                at += 1
        self.at = at + 1
        if self.pattern[at] == ")":
            return
        scoped_verbose = (verbose or "x" in added) and "x" not in removed
        self._push("group", scoped_verbose)

    def _push(self, kind: str, verbose: bool, capture: bool = False, name: str = "") -> None:
        """Open a group frame, numbering it when it captures."""
        number = None
        if capture:
            self.opened += 1
            number = self.opened
            if name:
                self.names[name] = number
        self.stack.append(_Frame(kind, [[]], verbose, number))

    def _close(self) -> None:
        """Close the innermost group and add it to the enclosing sequence."""
        frame = self.stack.pop()
        if frame.kind == "look":
            self.edits.append((self.at, self.at + 1, "){0})"))
        self.at += 1
        if frame.kind == "cond":
            branches = [_melted(branch) for branch in frame.alternatives]
            node = _Group("cond", [], branches)
        else:
            node = _Group(frame.kind, _alternation(frame.alternatives))
        if frame.capture is not None:
            self.groups[frame.capture] = node.body
        self.stack[-1].alternatives[-1].append(node)


def _literal_code(text: str) -> int | None:
    """The code point of one literal character or escape, else None."""
    if len(text) == 1:
        return ord(text)
    if len(text) < 2 or text[0] != "\\":
        return None
    letter, digits = text[1], text[2:]
    try:
        if letter in _HEX_ESCAPE_DIGITS and len(digits) == _HEX_ESCAPE_DIGITS[letter]:
            return int(digits, 16)
        if letter == "N" and digits.startswith("{") and digits.find("}") == len(digits) - 1:
            return ord(unicodedata.lookup(digits[1:-1]))
        if letter == "0" and all(d in _OCTAL for d in digits):
            return int(text[1:], 8)
    except (KeyError, ValueError):  # not one escape after all, e.g. "\\xab" in a class
        return None
    if len(text) == 2 and not letter.isalnum():
        return ord(letter)
    if len(text) == 2 and letter in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[letter]
    return None


def _melted(sequence: list[_Node]) -> list[_Node]:
    """Melt plain `(?:...)` groups into the sequence, as `re` does once a sequence is read."""
    melted: list[_Node] = []
    for node in sequence:
        if isinstance(node, _Group) and node.kind == "plain":
            melted.extend(node.body)
        else:
            melted.append(node)
    return melted


def _alternation(alternatives: list[list[_Node]]) -> list[_Node]:
    """Make one sequence of alternatives as `re` does: shared prefix out, then a class or branch."""
    alternatives = [_melted(a) for a in alternatives]
    if len(alternatives) == 1:
        return alternatives[0]
    prefix: list[_Node] = []
    while all(alternatives) and all(a[0] == alternatives[0][0] for a in alternatives):
        prefix.append(alternatives[0][0])
        alternatives = [a[1:] for a in alternatives]
    if all(len(a) == 1 and isinstance(a[0], _Char) and a[0].joinable for a in alternatives):
        return [*prefix, _Char(tuple(a[0].key for a in alternatives), joinable=True)]
    return [*prefix, _Branch(alternatives)]


# --- what the outline measures -------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """What makes a regex slow to check (see RegexOutline)."""

    degree: int = 0
    nested: bool = False
    unbuilt: bool = False


def _shape(items: list[_Node], at_start: bool = False, at_end: bool = False) -> _Shape:
    """Measure a sequence; `at_start`/`at_end`: it begins/ends the regex.

    An anchor builds (emits nothing and holds) only at the very start (^, \\A) or the very end
    ($, \\Z) of the regex, possibly inside groups or alternatives there; elsewhere it may fail.
    """
    degree, nested, unbuilt = 0, False, False
    last = len(items) - 1
    for index, node in enumerate(items):
        first_here, last_here = at_start and index == 0, at_end and index == last
        parts: list[_Shape] = []
        if isinstance(node, _Repeat):
            inner = _shape([node.item])
            parts.append(inner)
            if node.low == node.high:
                degree += node.low * inner.degree
            else:
                degree += 1 + inner.degree
                nested = nested or inner.degree > 0
        elif isinstance(node, _Branch):
            parts.extend(_shape(a, first_here, last_here) for a in node.alternatives)
            degree += 1 + max(p.degree for p in parts)
        elif isinstance(node, _Group):
            parts, unbuilt_here = _group_shapes(node, first_here, last_here)
            degree += max((p.degree for p in parts), default=0)
            unbuilt = unbuilt or unbuilt_here
        elif isinstance(node, _Backref):
            unbuilt = True
        elif isinstance(node, _Anchor):
            in_place = (node.place == "start" and first_here) or (node.place == "end" and last_here)
            unbuilt = unbuilt or not in_place
        nested = nested or any(p.nested for p in parts)
        unbuilt = unbuilt or any(p.unbuilt for p in parts)
        degree = min(degree, MAX_DEGREE)
    return _Shape(degree, nested, unbuilt)


def _group_shapes(group: _Group, first_here: bool, last_here: bool) -> tuple[list[_Shape], bool]:
    """Measure a group's contents, and tell whether the group itself may not build."""
    if group.kind == "cond":
        return [_shape(branch) for branch in group.branches], True
    if group.kind == "look":
        return [_shape(group.body)], True
    return [_shape(group.body, first_here, last_here)], False


def _longest(items: list[_Node], groups: dict[int, int]) -> int:
    """The most characters rstr builds for a sequence (lookarounds build none)."""
    total = 0
    for node in items:
        if isinstance(node, _Char):
            total += 1
        elif isinstance(node, _Backref):
            total += groups.get(node.group, 0)
        elif isinstance(node, _Repeat):
            most = repeat_counts(node.low, min(node.high, STAR_PLUS_LIMIT))[1]
            total += most * _longest([node.item], groups) if most else 0
        elif isinstance(node, _Branch):
            total += max(_longest(a, groups) for a in node.alternatives)
        elif isinstance(node, _Group) and node.kind == "cond":
            total += max(_longest(b, groups) for b in node.branches)
        elif isinstance(node, _Group) and node.kind != "look":
            total += _longest(node.body, groups)
    return total
