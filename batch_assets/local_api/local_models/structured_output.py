"""Structured outputs: response formats, JSON-schema answers and forced function calls."""

from __future__ import annotations

import copy
import json
import json.encoder
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from batch_assets.local_api.json_codec import value_key
from batch_assets.local_api.json_schema_instance import (
    GenerationBudget,
    SchemaRefused,
    instance_for,
)
from batch_assets.local_api.local_models.answer_text import answer_seed, canned_sentence
from batch_assets.local_api.local_models.body_walk import is_shared_value
from batch_assets.local_api.local_models.rejections import (
    RequestRejected,
    bad_value,
    missing_parameter,
    wrong_type,
)
from batch_assets.local_api.schema_plan import SchemaPlan, plan_for

# A cut answer is built this far past its max_tokens (and any stop sequence), then clipped.
_CUT_SLACK_CHARS = 64
_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class SchemaSite(NamedTuple):
    """Where a request holds a schema: how errors name it and which param they point at."""

    label: str
    param: str
    code: str | None


class Generation(NamedTuple):
    """The limits of one answer: the request's shared budget and where a cut answer may stop."""

    budget: GenerationBudget
    truncate_after: int | None = None


def cut_room(visible_budget: int | None, stop: object) -> int | None:
    """Return how many characters a cut answer needs built before it is clipped (None: all)."""
    if visible_budget is None:
        return None
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    longest = max((len(s) for s in sequences if isinstance(s, str)), default=0)
    return 4 * visible_budget + _CUT_SLACK_CHARS + longest


def _schema_value(
    schema: dict[str, Any], seed: int, generation: Generation, site: SchemaSite
) -> str:
    """Build a schema instance as compact JSON, or refuse the request naming the schema."""
    plan = _plan_of(schema)
    try:
        if plan is not None:
            value = plan.instance(
                seed=seed, budget=generation.budget, truncate_after=generation.truncate_after
            )
        else:
            value = instance_for(
                schema,
                seed=seed,
                budget=generation.budget,
                truncate_after=generation.truncate_after,
            )
    except SchemaRefused as refused:
        raise RequestRejected(
            f"Invalid schema for {site.label}: {refused}.", param=site.param, code=site.code
        ) from None
    return _COMPACT_JSON(value)


def _compact_writer() -> Callable[[object], str]:
    """What `json.dumps(value, ensure_ascii=False, separators=(",", ":"))` writes; the standard
    library's C encoder is built once (json.dumps builds one per call). Built values hold no
    cycles."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    default = json.JSONEncoder().default
    encoder = make(
        None, default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda value: "".join(encoder(value, 0))


_COMPACT_JSON = _compact_writer()


def _plan_of(schema: dict[str, Any]) -> SchemaPlan | None:
    """The plan read for this very schema object when its format was first read, if any."""
    known = _PLANS.get(id(schema))
    return known[1] if known is not None and known[0] is schema else None


def _remember_plan(reading: FormatReading) -> None:
    """Read the plan of a format's schema, kept by the schema object (which it keeps alive)."""
    schema = reading[1]
    if schema is None or id(schema) in _PLANS:
        return
    if len(_PLANS) >= _READ_FORMATS_SIZE:
        _PLANS.clear()
    _PLANS[id(schema)] = (schema, plan_for(schema))


def render_answer(
    kind: str,
    schema: dict[str, Any] | None,
    text: str,
    seed_of: tuple[str, int],
    generation: Generation,
    site: SchemaSite,
) -> str:
    """Write the answer text in the requested format (plain, JSON object or schema instance)."""
    digest, variant = seed_of
    if kind == "json_schema":
        chosen = schema if schema is not None else {"type": "object"}
        return _schema_value(chosen, answer_seed(digest, variant), generation, site)
    sentence = canned_sentence(text, digest, variant)
    if kind == "json_object":
        return json.dumps({"answer": sentence}, ensure_ascii=False, separators=(",", ":"))
    return sentence


def _strict_problem(schema: dict[str, Any]) -> str | None:
    """Find the first rule of strict structured outputs that a schema breaks."""
    if schema.get("type") != "object" or "anyOf" in schema:
        kind = schema.get("type", "anyOf" if "anyOf" in schema else None)
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{kind}\"'."
    return _strict_walk(schema, ())


def _strict_walk(node: object, context: tuple[str, ...]) -> str | None:
    """Check one subschema (and its children) for additionalProperties/required rules."""
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if is_object or "properties" in node:
        if node.get("additionalProperties") is not False:
            return (
                f"In context={context!r}, 'additionalProperties' is required to be supplied "
                "and to be false."
            )
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        required = node.get("required") if isinstance(node.get("required"), list) else []
        missing = [name for name in props if name not in required]
        if missing:
            return (
                f"In context={context!r}, 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing '{missing[0]}'."
            )
    children: list[tuple[tuple[str, ...], object]] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(node.get(key), dict):
            children.extend(((*context, key, name), sub) for name, sub in node[key].items())
    if "items" in node:
        children.append(((*context, "items"), node["items"]))
    for key in ("anyOf", "allOf"):
        if isinstance(node.get(key), list):
            children.extend(((*context, key, str(i)), sub) for i, sub in enumerate(node[key]))
    for child_context, child in children:
        problem = _strict_walk(child, child_context)
        if problem is not None:
            return problem
    return None


FormatReading = tuple[str, dict[str, Any] | None, dict[str, Any]]
# Formats read before, by where they sit and their value: a batch's requests share one.
_READ_FORMATS: dict[tuple[str, bytes], tuple[object, FormatReading]] = {}
_READ_FORMATS_SIZE = 256
# The same, by the spec object itself (kept alive here): bodies whose shared part was found clean
# before carry the very objects seen then.
_READ_SPECS: dict[int, tuple[object, str, FormatReading]] = {}
# The plans of the schemas of formats read before, by schema object (kept alive here).
_PLANS: dict[int, tuple[dict[str, Any], SchemaPlan | None]] = {}


def schema_format(
    spec: object, prefix: str, schema_param: str, schema_code: str | None
) -> FormatReading:
    """Validate a response_format / text.format; return (kind, schema, echo of the format).

    A format read before (the same value in the same place) gives the same objects back, read
    from a private copy: the checks, the strict-schema walk among them, are made once per
    template. Callers must not change what they get.
    """
    if not isinstance(spec, dict):
        return read_schema_format(spec, prefix, schema_param, schema_code)
    place = f"{prefix}\n{schema_param}\n{schema_code}"
    shared = is_shared_value(spec)
    same = _READ_SPECS.get(id(spec)) if shared else None
    if same is not None and same[0] is spec and same[1] == place:
        return same[2]
    spec_key = value_key(spec)
    if spec_key is None:
        return read_schema_format(spec, prefix, schema_param, schema_code)
    known = _READ_FORMATS.get((place, spec_key))
    if known is not None and known[0] == spec:
        reading = known[1]
    else:
        private = copy.deepcopy(spec)
        reading = read_schema_format(private, prefix, schema_param, schema_code)
        if len(_READ_FORMATS) >= _READ_FORMATS_SIZE:
            _READ_FORMATS.clear()
        _READ_FORMATS[(place, spec_key)] = (private, reading)
        _remember_plan(reading)
    if shared:
        if len(_READ_SPECS) >= _READ_FORMATS_SIZE:
            _READ_SPECS.clear()
        _READ_SPECS[id(spec)] = (spec, place, reading)
    return reading


def read_schema_format(
    spec: object, prefix: str, schema_param: str, schema_code: str | None
) -> FormatReading:
    """Validate a response_format / text.format afresh; return (kind, schema, echo)."""
    if spec is None:
        return "text", None, {"type": "text"}
    if not isinstance(spec, dict):
        raise wrong_type(prefix, "an object", spec)
    kind = spec.get("type")
    if kind is None:
        raise missing_parameter(f"{prefix}.type")
    if kind not in ("text", "json_object", "json_schema"):
        raise bad_value(f"{prefix}.type", kind, ("text", "json_object", "json_schema"))
    if kind != "json_schema":
        return kind, None, {"type": kind}
    # chat nests name/schema under "json_schema"; the responses API puts them on the format itself
    holder = spec if prefix == "text.format" else spec.get("json_schema")
    holder_param = prefix if prefix == "text.format" else f"{prefix}.json_schema"
    if holder is None:
        raise missing_parameter(holder_param)
    if not isinstance(holder, dict):
        raise wrong_type(holder_param, "an object", holder)
    name = holder.get("name")
    if name is None:
        raise missing_parameter(f"{holder_param}.name")
    if not isinstance(name, str):
        raise wrong_type(f"{holder_param}.name", "a string", name)
    if not _NAME_PATTERN.match(name):
        raise RequestRejected(
            f"Invalid '{holder_param}.name': string does not match pattern. Expected a string "
            "that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            param=f"{holder_param}.name",
            code="invalid_value",
        )
    schema = holder.get("schema")
    if schema is None and prefix == "text.format":
        raise missing_parameter(f"{holder_param}.schema")
    if schema is not None and not isinstance(schema, dict):
        raise wrong_type(f"{holder_param}.schema", "an object", schema)
    strict = holder.get("strict") is True
    if strict and schema is not None:
        problem = _strict_problem(schema)
        if problem is not None:
            raise RequestRejected(
                f"Invalid schema for response_format '{name}': {problem}",
                param=schema_param,
                code=schema_code,
            )
    echo: dict[str, Any] = {"type": "json_schema", "name": name}
    if isinstance(holder.get("description"), str):
        echo["description"] = holder["description"]
    echo["schema"] = schema if schema is not None else {}
    echo["strict"] = strict
    return "json_schema", schema, echo


def mentions_json(texts: list[str]) -> bool:
    """Tell whether any text contains the word "json" (json_object mode requires it)."""
    return any("json" in t.lower() for t in texts)


class _ForcedFunction(NamedTuple):
    """The function tool a request forces, and where its parameters schema is."""

    definition: dict[str, Any]
    site: SchemaSite


def forced_function(body: dict[str, Any], nested: bool) -> _ForcedFunction | None:
    """Return the function tool the request forces (tool_choice "required" or a named function)."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return None
    functions: list[_ForcedFunction] = []
    for index, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") == "function":
            definition = tool.get("function") if nested else tool
            if isinstance(definition, dict) and isinstance(definition.get("name"), str):
                where = f"tools[{index}].function" if nested else f"tools[{index}]"
                label = f"function '{definition['name'][:64]}'"
                site = SchemaSite(label, f"{where}.parameters", "invalid_function_parameters")
                functions.append(_ForcedFunction(definition, site))
    choice = body.get("tool_choice")
    if choice == "required" and functions:
        return functions[0]
    if isinstance(choice, dict) and choice.get("type") == "function":
        named = choice.get("function", {}) if nested else choice
        wanted = named.get("name") if isinstance(named, dict) else None
        return next((f for f in functions if f.definition["name"] == wanted), None)
    return None


def function_arguments(forced: _ForcedFunction, seed: int, budget: GenerationBudget) -> str:
    """Make JSON arguments that fit a function tool's parameters schema."""
    parameters = forced.definition.get("parameters")
    schema = parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
    return _schema_value(schema, seed, Generation(budget), forced.site)
