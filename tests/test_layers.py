"""Imports point one way: core imports no Dagster, local_api imports neither other layer, and in
the pipeline layer the asset modules, the sensor and the spec import only what sits below them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "batch_assets"
ASSET_MODULES = [
    "request_assets",
    "submit_asset",
    "download_assets",
    "results_asset",
    "checks",
    "cancel_job",
]
# What the modules everything builds on must not import: assets, the sensor, the factory.
ABOVE_SPEC = {f"batch_assets.pipeline.{name}" for name in [*ASSET_MODULES, "sensor", "factory"]}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _files(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _files("core"), ids=lambda path: path.name)
def test_core_imports_no_dagster_and_nothing_above_it(path: Path) -> None:
    bad = {
        name
        for name in imported_modules(path)
        if name.split(".")[0] == "dagster"
        or name.startswith(("batch_assets.pipeline", "batch_assets.defs", "batch_assets.local_api"))
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _files("local_api"), ids=lambda path: path.name)
def test_local_api_imports_nothing_else_of_the_project(path: Path) -> None:
    bad = {
        name
        for name in imported_modules(path)
        if name.startswith("batch_assets.") and not name.startswith("batch_assets.local_api")
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", ASSET_MODULES)
def test_no_asset_module_imports_another_asset_module_or_the_sensor(name: str) -> None:
    imports = imported_modules(PACKAGE / "pipeline" / f"{name}.py")
    others = {f"batch_assets.pipeline.{other}" for other in ASSET_MODULES if other != name}
    bad = {module for module in imports if module in others | {"batch_assets.pipeline.sensor"}}
    assert not bad, f"{name}.py imports {sorted(bad)}"


FOUNDATION = [
    "spec",
    "keys",
    "settings",
    "sources",
    "resource",
    "event_log",
    "ledger",
    "sensor_cursor",
    "table_metadata",
    "submission",
    "retries",
    "pricing",
    "budget",
]


@pytest.mark.parametrize("name", FOUNDATION)
def test_the_modules_everything_builds_on_import_nothing_above_them(name: str) -> None:
    bad = imported_modules(PACKAGE / "pipeline" / f"{name}.py") & ABOVE_SPEC
    assert not bad, f"{name}.py imports {sorted(bad)}"
