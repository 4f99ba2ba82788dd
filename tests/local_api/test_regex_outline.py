"""The outline of a `pattern` regex: read without `re._parser`, as `re` itself would weigh it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import rstr

from batch_assets.local_api.json_schema_instance import GenerationBudget, _PatternDraws
from batch_assets.local_api.regex_outline import outline, repeat_counts

LOCAL_API = Path(__file__).resolve().parents[2] / "batch_assets" / "local_api"
PRIVATE_REGEX_MODULES = ("re._", "sre_parse", "sre_compile", "sre_constants")

# (pattern, degree, nested, unbuilt), as the former walk of `re._parser`'s tree measured them.
SHAPES = [
    (r"^[A-Z]{3}-\d{4}$", 0, False, False),
    ("a|b|c", 0, False, False),  # one-character alternatives: a class
    ("ab|ac", 0, False, False),  # the shared prefix moves out, the rest is a class
    ("(ab|cd)+", 2, True, False),
    ("(a|b)+", 1, False, False),
    ("(?:a+)+", 2, True, False),
    ("(?:a+){12}$b", 12, False, True),
    ("^a$|^b$", 1, False, False),
    ("(^x)$", 0, False, False),
    (r"\A[a-z]+\Z", 1, False, False),
    ("(?=(a+)+b)a{22}", 2, True, True),
    (r"(a)\1", 0, False, True),
    (r"(?P<q>a)(?P=q)", 0, False, True),
    (r"\bword\b", 0, False, True),
    ("(?m)^a$", 0, False, False),
    ("(?x) a + # note\n b*", 2, False, False),
    ("(?>ab)+", 1, False, False),
    ("a*+b", 1, False, False),
    ("(a)?(?(1)b|c)", 1, False, True),
    ("[]a]+|[^]a]*", 2, False, False),
    (r"\x61+|\x61b", 2, False, False),
    ("a{,}b{2,}c{,3}", 3, False, False),
    ("x{}y{1,x}", 0, False, False),  # braces that are no quantifier are literals
    ("(?#c)a*", 1, False, False),
    (r"(?<=a)b", 0, False, True),
    (r"(?<!a)b+", 1, False, True),
    (r"(?!x)y*", 1, False, True),
    ("(?i:a|b)+", 1, False, False),
    (r"^(?=.*[a-z])(?=.*\d)[a-z\d]{8,}$", 3, False, True),
    ("a{3}b{2}|c", 1, False, False),
]

BUILDABLE = [
    ("(?=a)b", "(?:(?:a){0})b"),
    ("(?<!a)b+", "(?:(?:a){0})b+"),
    ("(?=a)*b", "(?:(?:a){0})*b"),
    ("(?>a+)b", "(?:a+)b"),
    ("a*+b{2,3}+c?+", "a*b{2,3}c?"),
    ("a*?b+", "a*?b+"),
    ("(a)?(?(1)b|c)", "(a)?(?:b|c)"),
    ("(?x) a + # (?=no lookaround in a comment)\n", "(?x) a + # (?=no lookaround in a comment)\n"),
    (r"[(?=a)]\(?=x", r"[(?=a)]\(?=x"),
]

LONGEST = [
    (r"^[a-z]{2,}$", 5),
    ("a{150}", 150),  # over rstr's cap of 100 repeats: the least the regex allows
    ("(ab|c){2}", 4),
    ("(?=abc)x", 1),
    (r"(a+)\1", 8),
    (".*", 3),
    ("a{0}b?", 1),
    (r"(?P<w>\w{2})-(?P=w)", 5),
]

# Built from the outline's buildable form, each string of these matches the whole pattern.
BUILT_WHOLE = [
    r"^[A-Z]{3}-\d{4}$",
    r"(red|green|blue)(-[0-9]+)?",
    r"[^a-z]{2,5}",
    r"\W\S\D[^\d\s]",
    r"(?:ab){2,}?c*+",
    r"(?>a+)b",
    r"(?P<q>['\"])\w+(?P=q)",
    r"(?x) [a-z]+ \  \d{2}  # a word and two digits",
    r"\x41\u00e9\N{EM DASH}[\u4e00-\u9fff]",
    r"(?i:yes|no)",
]


def _private_regex_uses(source: str) -> list[str]:
    """The imports of `re`'s private modules, and `._parser` lookups, in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(PRIVATE_REGEX_MODULES)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [n for n in [node.module, *names] if n.startswith(PRIVATE_REGEX_MODULES)]
        elif isinstance(node, ast.Attribute) and node.attr in ("_parser", "_compiler"):
            found.append(node.attr)
    return found


def test_no_module_reads_regexes_with_the_private_parser() -> None:
    users = {p.name: _private_regex_uses(p.read_text()) for p in LOCAL_API.rglob("*.py")}
    assert {name: uses for name, uses in users.items() if uses} == {}


@pytest.mark.parametrize(("pattern", "degree", "nested", "unbuilt"), SHAPES)
def test_the_outline_weighs_a_pattern_as_re_runs_it(
    pattern: str, degree: int, nested: bool, unbuilt: bool
) -> None:
    shape = outline(pattern)
    assert (shape.degree, shape.nested, shape.unbuilt) == (degree, nested, unbuilt)


@pytest.mark.parametrize(("pattern", "buildable"), BUILDABLE)
def test_lookarounds_build_nothing_and_rstr_gets_syntax_it_reads(
    pattern: str, buildable: str
) -> None:
    assert outline(pattern).buildable == buildable
    re.compile(buildable)


@pytest.mark.parametrize(("pattern", "longest"), LONGEST)
def test_the_longest_built_string_is_reckoned(pattern: str, longest: int) -> None:
    assert outline(pattern).longest == longest


def test_repeat_counts_stay_within_three_of_the_least() -> None:
    assert repeat_counts(0, 100) == (0, 3)
    assert repeat_counts(2, 3) == (2, 3)
    assert repeat_counts(5, 5) == (5, 5)
    assert repeat_counts(150, 100) == (150, 150)  # rstr capped `high` below `low`


@pytest.mark.parametrize("pattern", BUILT_WHOLE)
def test_strings_built_from_the_outline_match_whole_and_fit_its_longest(pattern: str) -> None:
    shape = outline(pattern)
    for seed in range(20):
        text = rstr.Rstr(_PatternDraws(seed, GenerationBudget())).xeger(shape.buildable)
        assert re.fullmatch(pattern, text), (seed, text)
        assert len(text) <= shape.longest


def test_draws_are_the_same_for_the_same_seed_and_differ_across_seeds() -> None:
    pattern = outline(r"[a-z]{4,8}\d{2}").buildable
    built = [rstr.Rstr(_PatternDraws(seed, GenerationBudget())).xeger(pattern) for seed in range(8)]
    again = [rstr.Rstr(_PatternDraws(seed, GenerationBudget())).xeger(pattern) for seed in range(8)]
    assert built == again
    assert len(set(built)) > 4


def test_draws_spend_the_budget_one_step_a_draw_and_one_a_repeat() -> None:
    budget = GenerationBudget()
    draws = _PatternDraws(0, budget)
    assert draws.randint(7, 7) == 7
    assert budget.steps == GenerationBudget().steps - 8
    draws.choice("abc")
    assert budget.steps == GenerationBudget().steps - 9
