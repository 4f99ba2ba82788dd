"""Validate bodies against the official OpenAI spec in `../shared/openai-openapi/`."""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = Path(
    os.environ.get("BATCH_ASSETS_OPENAPI_DIR", REPO_ROOT.parent / "shared" / "openai-openapi")
)
CURRENT_SPEC = "openapi.yaml"
# The older spec still holds the per-line schemas BatchRequestInput and BatchRequestOutput.
LINE_SPEC = "openapi-2025-06.yaml"


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
def _components(spec: str) -> dict[str, Any]:
    path = SPEC_DIR / spec
    if not path.exists():
        raise FileNotFoundError(
            f"The OpenAI spec is not at {path}; set BATCH_ASSETS_OPENAPI_DIR to its folder."
        )
    with path.open() as handle:
        document = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return document["components"]


@cache
def _validator(schema_name: str, relaxed: bool, spec: str) -> jsonschema.Draft202012Validator:
    components = _components(spec)
    if relaxed:
        components = relax_optional_nulls(copy.deepcopy(components))
    return jsonschema.Draft202012Validator(
        {"components": components, "$ref": f"#/components/schemas/{schema_name}"}
    )


def spec_errors(
    body: Any, schema_name: str, *, relaxed: bool = True, spec: str = CURRENT_SPEC
) -> list[str]:
    """Every way `body` breaks the named schema (empty when it conforms)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in _validator(schema_name, relaxed, spec).iter_errors(body)
    ]


def spec_properties(schema_name: str, spec: str = CURRENT_SPEC) -> set[str]:
    """The keys a schema lists."""
    return set(_components(spec)["schemas"][schema_name].get("properties", {}))


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
