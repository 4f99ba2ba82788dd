"""Tests for the JSON-schema instance builder behind structured outputs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import jsonschema
import pytest

from batch_assets.local_api.json_schema_instance import (
    MAX_BUILD_STEPS,
    GenerationBudget,
    SchemaRefused,
    instance_for,
)

SEEDS = range(30)
REPO = Path(__file__).resolve().parents[2]

SCHEMAS: dict[str, dict] = {
    "sentiment": {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": ["positive", "negative", "neutral"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["label", "confidence"],
        "additionalProperties": False,
    },
    "nested_objects": {
        "type": "object",
        "properties": {
            "person": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 3},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                        "required": ["city", "zip"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "age", "address"],
                "additionalProperties": False,
            },
            "active": {"type": "boolean"},
            "note": {"type": "null"},
        },
        "required": ["person", "active", "note"],
        "additionalProperties": False,
    },
    "arrays": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
            "scores": {"type": "array", "items": {"type": "number"}, "maxItems": 0},
            "matrix": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            },
            "unique": {
                "type": "array",
                "items": {"enum": ["a", "b", "c"]},
                "minItems": 3,
                "uniqueItems": True,
            },
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
                "minItems": 2,
            },
        },
        "required": ["tags", "scores", "matrix", "unique", "pair"],
        "additionalProperties": False,
    },
    "strings": {
        "type": "object",
        "properties": {
            "short": {"type": "string", "maxLength": 3},
            "long": {"type": "string", "minLength": 40, "maxLength": 45},
            "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
            "choice": {"type": "string", "pattern": "^(red|green|blue)(-[0-9]+)?$"},
            "not_lower": {"type": "string", "pattern": "^[^a-z]{2,5}$"},
            "fixed": {"const": "v1"},
        },
        "required": ["short", "long", "code", "choice", "not_lower", "fixed"],
        "additionalProperties": False,
    },
    "formats": {
        "type": "object",
        "properties": {
            name: {"type": "string", "format": name}
            for name in ("date", "date-time", "time", "email", "uri", "uuid", "ipv4", "ipv6")
        },
        "required": ["date", "date-time", "time", "email", "uri", "uuid", "ipv4", "ipv6"],
        "additionalProperties": False,
    },
    "numbers": {
        "type": "object",
        "properties": {
            "open_int": {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7},
            "decimal_step": {"type": "number", "multipleOf": 0.1, "minimum": 0.25, "maximum": 0.65},
            "negative_step": {"type": "integer", "multipleOf": 7, "minimum": -30, "maximum": -1},
            "tiny_open": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.01},
            "half_step_int": {"type": "integer", "multipleOf": 0.5},
            "only_max": {"type": "number", "maximum": -1000},
            "only_min": {"type": "integer", "minimum": 10**6},
        },
        "required": [
            "open_int",
            "decimal_step",
            "negative_step",
            "tiny_open",
            "half_step_int",
            "only_max",
            "only_min",
        ],
        "additionalProperties": False,
    },
    "any_of": {
        "type": "object",
        "properties": {
            "value": {
                "anyOf": [
                    {"type": "string", "format": "date"},
                    {"type": "integer", "minimum": 1000},
                    {
                        "type": "object",
                        "properties": {"x": {"type": "number"}},
                        "required": ["x"],
                        "additionalProperties": False,
                    },
                ]
            },
            "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "nullable": {"type": ["integer", "null"]},
        },
        "required": ["value", "maybe", "nullable"],
        "additionalProperties": False,
    },
    "one_of_overlapping": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    "all_of": {
        "allOf": [
            {"$ref": "#/$defs/base"},
            {"properties": {"extra": {"type": "integer", "minimum": 3}}, "required": ["extra"]},
        ],
        "$defs": {
            "base": {
                "type": "object",
                "properties": {"id": {"type": "string", "format": "uuid"}},
                "required": ["id"],
            }
        },
    },
    "defs_tree": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["name", "children"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    },
    "root_linked_list": {
        "type": "object",
        "properties": {
            "value": {"type": "integer"},
            "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
        },
        "required": ["value", "next"],
        "additionalProperties": False,
    },
    "definitions_optional_recursion": {
        "definitions": {
            "item": {
                "type": "object",
                "properties": {"label": {"type": "string"}, "sub": {"$ref": "#/definitions/item"}},
                "required": ["label"],
            }
        },
        "$ref": "#/definitions/item",
    },
    "additional_properties_map": {
        "type": "object",
        "additionalProperties": {"type": "integer", "minimum": 1},
        "minProperties": 2,
    },
    "untyped": {},
}


def _validate(schema: dict, value: object) -> None:
    """Validate with the reference implementation, formats included."""
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(schema, format_checker=checker).validate(value)


def _depth(value: object) -> int:
    """Measure how deeply containers nest."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_instances_validate_for_every_seed(name: str) -> None:
    schema = SCHEMAS[name]
    for seed in SEEDS:
        _validate(schema, instance_for(schema, seed=seed))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_same_schema_and_seed_give_the_same_value(name: str) -> None:
    schema = SCHEMAS[name]
    assert [instance_for(schema, seed=s) for s in SEEDS] == [
        instance_for(schema, seed=s) for s in SEEDS
    ]


def test_seed_picks_different_enum_labels() -> None:
    labels = [instance_for(SCHEMAS["sentiment"], seed=s)["label"] for s in SEEDS]
    assert set(labels) == {"positive", "negative", "neutral"}


def test_different_seeds_give_different_values() -> None:
    values = {json.dumps(instance_for(SCHEMAS["nested_objects"], seed=s)) for s in SEEDS}
    assert len(values) > len(SEEDS) // 2


def test_every_property_is_emitted_even_when_optional() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}},
        "required": ["a"],
    }
    assert set(instance_for(schema, seed=1)) == {"a", "b", "c"}


def test_formats_are_real_values() -> None:
    value = instance_for(SCHEMAS["formats"], seed=7)
    dt.date.fromisoformat(value["date"])
    assert dt.datetime.fromisoformat(value["date-time"].replace("Z", "+00:00")).tzinfo is not None
    assert re.fullmatch(r"\d{2}:\d{2}:\d{2}Z", value["time"])
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", value["email"])
    uri = urllib.parse.urlparse(value["uri"])
    assert uri.scheme == "https" and uri.netloc
    assert uuid.UUID(value["uuid"]).version == 4
    assert isinstance(ipaddress.ip_address(value["ipv4"]), ipaddress.IPv4Address)
    assert isinstance(ipaddress.ip_address(value["ipv6"]), ipaddress.IPv6Address)


def test_patterns_and_lengths_hold() -> None:
    for seed in SEEDS:
        value = instance_for(SCHEMAS["strings"], seed=seed)
        assert re.fullmatch(r"[A-Z]{3}-\d{4}", value["code"])
        assert len(value["short"]) <= 3
        assert 40 <= len(value["long"]) <= 45
        assert value["fixed"] == "v1"


def test_exclusive_bounds_leave_a_single_integer() -> None:
    values = {instance_for(SCHEMAS["numbers"], seed=s)["open_int"] for s in SEEDS}
    assert values == {6}


def test_one_of_with_overlapping_branches_gives_a_non_integer_number() -> None:
    for seed in SEEDS:
        value = instance_for(SCHEMAS["one_of_overlapping"], seed=seed)
        assert isinstance(value, float) and not value.is_integer()


def test_all_of_merges_required_properties_of_every_member() -> None:
    value = instance_for(SCHEMAS["all_of"], seed=3)
    assert set(value) >= {"id", "extra"}
    assert value["extra"] >= 3


@pytest.mark.parametrize(
    "name", ["defs_tree", "root_linked_list", "definitions_optional_recursion"]
)
def test_recursive_schemas_terminate_shallowly(name: str) -> None:
    for seed in SEEDS:
        assert _depth(instance_for(SCHEMAS[name], seed=seed)) <= 12


def test_linked_list_ends_with_null() -> None:
    node = instance_for(SCHEMAS["root_linked_list"], seed=5)
    hops = 0
    while node is not None:
        node = node["next"]
        hops += 1
    assert 1 <= hops <= 5


def test_recursion_without_escape_hatch_is_refused() -> None:
    schema = {
        "$defs": {
            "loop": {
                "type": "object",
                "properties": {"again": {"$ref": "#/$defs/loop"}},
                "required": ["again"],
            }
        },
        "$ref": "#/$defs/loop",
    }
    with pytest.raises(SchemaRefused, match=r"no finite instance.*'#/\$defs/loop'"):
        instance_for(schema, seed=0)


def test_type_list_prefers_a_concrete_type() -> None:
    values = [instance_for({"type": ["string", "null"]}, seed=s) for s in SEEDS]
    assert all(isinstance(v, str) for v in values)


def test_ref_siblings_are_merged() -> None:
    schema = {
        "$defs": {"word": {"type": "string"}},
        "type": "object",
        "properties": {"w": {"$ref": "#/$defs/word", "maxLength": 2}},
        "required": ["w"],
    }
    for seed in SEEDS:
        assert len(instance_for(schema, seed=seed)["w"]) <= 2


def test_enum_values_outside_the_declared_type_are_not_picked() -> None:
    schema = {"type": "string", "enum": ["a", None, 3]}
    assert {instance_for(schema, seed=s) for s in SEEDS} == {"a"}


# One pattern of each kind of regex syntax `pattern` may use.
PATTERNS = {
    "classes": r"^[A-Za-z_][A-Za-z0-9_]{2,6}$",
    "negated_class": r"^[^aeiou\s]{3,5}$",
    "categories": r"^\d\w\s\S\W\D$",
    "alternation": r"^(?:cat|dog|bird)s?$",
    "fixed_and_ranged_repeats": r"^a{3}b{1,2}c*d+e?$",
    "lazy_and_possessive_repeats": r"^x+?y*+z{2,}?$",
    "unanchored": r"[A-Z]{2}-\d{3}",
    "string_anchors": r"\A(?:ab)+\Z",
    "lookahead": r"^(?=.*\d)[a-z0-9]{4,8}$",
    "negative_lookahead": r"^(?!test)[a-z]{4}$",
    "lookbehind": r"^\w+(?<![_0-9])$",
    "backreference": r"^(\w)-\1$",
    "named_backreference": r"^(?P<tag>[a-z]{2})=(?P=tag)$",
    "atomic_group": r"^(?>[a-z]+)\d$",
    "conditional": r"^(<)?\w+(?(1)>|)$",
    "verbose": "(?x) ^ [a-z]{3}  # three letters\n  - \\d{2} $",
    "escapes": r"^\x41\u00e9\N{EM DASH}\.\t$",
    "unicode_range": r"^[\u4e00-\u9fff]{2,4}$",
    "dot": r"^.{5}$",
    "case_insensitive": r"(?i)^abc$",
}
# Patterns whose built strings come from sets in rstr (negated classes, \W): their order changes
# from process to process, the strings must not.
SET_BUILT = [r"^[^a-z]{2,5}$", r"^\W{4}$", r"^[^\d\s]{3}$", r"^.{4}$"]


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_kind_of_pattern_gives_strings_matching_it_whole(name: str) -> None:
    pattern = PATTERNS[name]
    values = [instance_for({"type": "string", "pattern": pattern}, seed=s) for s in range(15)]
    assert [v for v in values if not re.fullmatch(pattern, v)] == []
    assert len(set(values)) > 1 or name in ("escapes", "case_insensitive")


def test_pattern_strings_keep_within_min_and_max_length() -> None:
    schema = {"type": "string", "pattern": "^[a-z]+$", "minLength": 3, "maxLength": 4}
    values = [instance_for(schema, seed=s) for s in SEEDS]
    assert all(re.fullmatch("[a-z]{3,4}", v) for v in values), values


def _set_built_values(hash_seed: str) -> str:
    """The SET_BUILT strings for seeds 0-9, built in a fresh process with PYTHONHASHSEED set."""
    code = (
        "import json, sys\n"
        "from batch_assets.local_api.json_schema_instance import instance_for\n"
        "patterns = json.loads(sys.argv[1])\n"
        "print(json.dumps([instance_for({'type': 'string', 'pattern': p}, seed=s)"
        " for p in patterns for s in range(10)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(SET_BUILT)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_pattern_strings_are_the_same_in_every_process() -> None:
    outputs = {_set_built_values(hash_seed) for hash_seed in ("0", "1", "2", "3")}
    assert len(outputs) == 1
    expected = [
        instance_for({"type": "string", "pattern": p}, seed=s) for p in SET_BUILT for s in range(10)
    ]
    assert json.loads(outputs.pop()) == expected


@pytest.mark.parametrize("pattern", [r"a\bb", r"[^\s\S]", "(?:a+){12}$b"])
def test_a_pattern_no_built_string_matches_gives_plain_words(pattern: str) -> None:
    values = [instance_for({"type": "string", "pattern": pattern}, seed=s) for s in range(5)]
    assert all(isinstance(v, str) and v and not re.search(pattern, v) for v in values)


def test_a_pattern_whose_strings_can_overrun_an_answer_is_refused_before_building() -> None:
    pattern = "(?:(?:" + "a" * 980 + "){300}){300}"  # 88 million characters
    budget = GenerationBudget()
    with pytest.raises(SchemaRefused, match="can build strings longer than the 512,000 characters"):
        instance_for({"type": "string", "pattern": pattern}, seed=0, budget=budget)
    assert MAX_BUILD_STEPS - budget.steps < 10


def test_a_pattern_needing_more_steps_than_a_request_has_is_refused_before_building() -> None:
    budget = GenerationBudget()
    with pytest.raises(SchemaRefused, match=r"'a\{200000\}' needs more than the 100,000 steps"):
        instance_for({"type": "string", "pattern": "a{200000}"}, seed=0, budget=budget)
    assert budget.steps == -1


def test_a_class_of_many_characters_costs_steps_by_its_size() -> None:
    budget = GenerationBudget()
    value = instance_for(
        {"type": "string", "pattern": r"^[\u4e00-\u9fff]{2}$"}, seed=0, budget=budget
    )
    assert re.fullmatch(r"[\u4e00-\u9fff]{2}", value)
    assert MAX_BUILD_STEPS - budget.steps >= 2 * 20_992 // 64


def test_pattern_strings_hold_no_lone_surrogate() -> None:
    # The range spans every surrogate: a lone one has no UTF-8 form, so no answer may hold one.
    pattern = r"^[\ud7ff-\ue000]{6}$"
    for seed in range(10):
        value = instance_for({"type": "string", "pattern": pattern}, seed=seed)
        assert re.fullmatch(pattern, value)
        value.encode("utf-8")
