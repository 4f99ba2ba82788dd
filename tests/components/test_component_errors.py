"""A mistake in a defs.yaml is reported with its file, its line and the attribute's path."""

from __future__ import annotations

import re

import pytest
from dagster.components.testing import DefsFolderSandbox

from tests.components.conftest import write_yaml

ROWS = "tests.components.test_batch_pipeline_component:catalog_rows"
JSONL = "source:\n  jsonl_file: r.jsonl\n"
TEMPLATE = """\
source:
  dataframe:
    upstream: rows
    template:
      model: gpt-4o-mini
      user_template: "{text}"
"""

# (attributes, line of the mistake, attribute path, words of the message); line 3 is the first
# attribute, as `write_yaml` writes `type:` and `attributes:` first.
CASES = {
    "wrong_type": (
        f"name: bad\n{JSONL}max_attempts: three\n",
        6,
        "attributes.max_attempts",
        "valid integer",
    ),
    "wrong_nested_type": (
        f"name: bad\n{TEMPLATE}      params: 3\n",
        10,
        "attributes.source.dataframe.template.params",
        "object",
    ),
    "unknown_field": (
        f"name: bad\n{JSONL}max_atempts: 2\n",
        6,
        "attributes.max_atempts",
        "Extra inputs are not permitted",
    ),
    "unknown_nested_field": (
        "name: bad\nsource:\n  jsonl: r.jsonl\n",
        5,
        "attributes.source.jsonl",
        "Extra inputs are not permitted",
    ),
    "missing_source": ("name: bad\n", 2, "attributes.source", "Field required"),
    "two_sources": (
        f"name: bad\n{JSONL}  iterator: {ROWS}\n",
        4,
        "attributes.source",
        "exactly one of dataframe, jsonl_file and iterator; got jsonl_file, iterator",
    ),
    "no_source": ("name: bad\nsource: {}\n", 4, "attributes.source", "got none"),
    "bad_name": (f"name: Bad-Name\n{JSONL}", 3, "attributes.name", "snake_case"),
    "bad_endpoint": (
        f"name: bad\n{JSONL}endpoint: /v1/images/generations\n",
        6,
        "attributes.endpoint",
        "is not one the Batch API takes",
    ),
    "endpoint_differs_from_template": (
        f"name: bad\nendpoint: /v1/responses\n{TEMPLATE}",
        4,
        "attributes.endpoint",
        "differs from the template's '/v1/chat/completions'",
    ),
    "missing_response_format_file": (
        f"name: bad\n{TEMPLATE}      response_format: missing.schema.json\n",
        10,
        "attributes.source.dataframe.template.response_format",
        "cannot read the JSON schema file",
    ),
    "template_endpoint": (
        TEMPLATE.replace("model:", "endpoint: /v1/moderations\n      model:") + "name: bad\n",
        7,
        "attributes.source.dataframe.template.endpoint",
        "templates support the endpoints",
    ),
    "template_refused": (
        f"name: bad\n{TEMPLATE}      params: {{messages: []}}\n",
        7,
        "attributes.source.dataframe.template",
        "messages",
    ),
    "bad_iterator": (
        "name: bad\nsource:\n  iterator: no_such_module:rows\n",
        5,
        "attributes.source.iterator",
        "cannot import 'no_such_module'",
    ),
    "iterator_without_function": (
        "name: bad\nsource:\n  iterator: tests.components\n",
        5,
        "attributes.source.iterator",
        "expected 'package.module:function'",
    ),
    "zero_attempts": (f"name: bad\n{JSONL}max_attempts: 0\n", 6, "attributes.max_attempts", "1"),
    "error_rate": (
        f"name: bad\n{JSONL}max_error_rate: 1.5\n",
        6,
        "attributes.max_error_rate",
        "between 0 and 1",
    ),
    "completion_window": (
        f"name: bad\n{JSONL}completion_window: 48h\n",
        6,
        "attributes.completion_window",
        "completion_window '48h' is not one the Batch API takes",
    ),
    "too_much_metadata": (
        f"name: bad\n{JSONL}metadata:\n" + "".join(f"  k{i}: v\n" for i in range(12)),
        6,
        "attributes.metadata",
        "at most 11",
    ),
    "metadata_not_text": (
        f"name: bad\n{JSONL}metadata:\n  version: 2\n",
        7,
        "attributes.metadata.version",
        "valid string",
    ),
    "limits": (
        f"name: bad\n{JSONL}limits:\n  max_requests: 0\n",
        7,
        "attributes.limits.max_requests",
        "positive integer",
    ),
    "schedule": (
        f"name: bad\n{JSONL}schedule: every day\n",
        6,
        "attributes.schedule",
        "not a cron schedule",
    ),
    "reserved_tag": (
        f"name: bad\n{JSONL}tags:\n  batch_assets/pipeline: x\n",
        6,
        "attributes.tags",
        "the pipeline's own",
    ),
    "cache_mode": (
        f"name: bad\n{JSONL}cache: sometimes\n",
        6,
        "attributes.cache",
        "cache must be one of reuse, refresh, off; got 'sometimes'",
    ),
    "cache_name": (
        f'name: bad\n{JSONL}cache_name: "Bad Name"\n',
        6,
        "attributes.cache_name",
        "cache_name 'Bad Name' must be snake_case",
    ),
    "negative_cache_max_age": (
        f'name: bad\n{JSONL}cache_max_age: "-3h"\n',
        6,
        "attributes.cache_max_age",
        "cache_max_age must be positive",
    ),
    "zero_cache_max_age": (
        f"name: bad\n{JSONL}cache_max_age: 0\n",
        6,
        "attributes.cache_max_age",
        "cache_max_age must be positive",
    ),
    "unreadable_cache_max_age": (
        f"name: bad\n{JSONL}cache_max_age: a week\n",
        6,
        "attributes.cache_max_age",
        "cache_max_age 'a week' is not a duration",
    ),
    "huge_cache_max_age": (
        f"name: bad\n{JSONL}cache_max_age: 99999999999d\n",
        6,
        "attributes.cache_max_age",
        "is not a duration",
    ),
    "negative_max_cost": (
        f"name: bad\n{JSONL}max_cost_usd: -1\n",
        6,
        "attributes.max_cost_usd",
        "max_cost_usd must be a positive number of dollars, got -1",
    ),
    "on_superseded": (
        f"name: bad\n{JSONL}on_superseded: later\n",
        6,
        "attributes.on_superseded",
        "on_superseded must be one of cancel, keep; got 'later'",
    ),
}


def error_text(error: BaseException) -> str:
    """The error and its causes: Dagster wraps the component's error in its tree's."""
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("case", CASES)
def test_mistake_names_file_line_and_attribute(sandbox: DefsFolderSandbox, case: str) -> None:
    attributes, line, path, words = CASES[case]
    folder = write_yaml(sandbox, case, attributes)
    # Exception: Dagster wraps the error in types that vary with the stage that found it
    with pytest.raises(Exception) as caught, sandbox.load_component_and_build_defs(folder):
        pass
    text = error_text(caught.value)
    yaml_file = re.escape(str(folder / "defs.yaml"))
    # ours: `<file>:<line> - attributes.x: message`; Dagster's: `attributes.x at <file>:<line>`
    located = rf"{yaml_file}:{line} - {re.escape(path)}: |`{re.escape(path)} at {yaml_file}:{line}`"
    assert re.search(located, text), text
    assert words in text, text
