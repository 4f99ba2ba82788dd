"""Write defs.yaml files into a throwaway defs folder and load them as `dg` would."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox

COMPONENT = "batch_assets.BatchPipelineComponent"


@pytest.fixture
def sandbox() -> Iterator[DefsFolderSandbox]:
    with create_defs_folder_sandbox() as folder_sandbox:
        yield folder_sandbox


def write_yaml(
    sandbox: DefsFolderSandbox, name: str, attributes: str, files: dict[str, str] | None = None
) -> Path:
    """`<defs>/<name>/defs.yaml` of the component with `attributes` (YAML, indented by two),
    and `files` beside it. Line 1 is `type:`, line 2 `attributes:`, line 3 the first attribute."""
    folder = sandbox.defs_folder_path / name
    folder.mkdir(parents=True)
    body = textwrap.indent(textwrap.dedent(attributes).strip("\n"), "  ")
    (folder / "defs.yaml").write_text(f"type: {COMPONENT}\nattributes:\n{body}\n")
    for file_name, text in (files or {}).items():
        (folder / file_name).write_text(text)
    return folder


Loader = Callable[..., tuple[dg.Component, dg.Definitions]]


@pytest.fixture
def load(sandbox: DefsFolderSandbox) -> Loader:
    """Write one defs.yaml and return its component and the definitions it builds."""

    def _load(
        attributes: str, files: dict[str, str] | None = None, name: str = "pipeline"
    ) -> tuple[dg.Component, dg.Definitions]:
        folder = write_yaml(sandbox, name, attributes, files)
        with sandbox.load_component_and_build_defs(defs_path=folder) as (component, defs):
            return component, defs

    return _load
