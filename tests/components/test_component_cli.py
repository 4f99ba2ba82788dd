"""`dg` lists, scaffolds and checks the component, in a copy of the project (never the working
tree). A few seconds per `dg` call, so few calls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batch_assets.project import PROJECT_ROOT

DG = Path(sys.prefix) / "bin" / "dg"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """pyproject.toml and batch_assets/, copied."""
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", copy)
    shutil.copytree(
        PROJECT_ROOT / "batch_assets",
        copy / "batch_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return copy


def dg(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `dg` in the copy, importing the copy's batch_assets rather than the installed one."""
    env = {
        **os.environ,
        "VIRTUAL_ENV": sys.prefix,
        "PYTHONPATH": str(project),  # for dg's own imports too, not only the code location's
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [str(DG), *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def test_listed_scaffolded_and_loaded_as_it_is(project: Path) -> None:
    listed = dg(project, "list", "components", "--json")
    assert listed.returncode == 0, listed.stderr
    keys = {item["key"] for item in json.loads(listed.stdout)["items"]}
    assert "batch_assets.BatchPipelineComponent" in keys

    result = dg(project, "scaffold", "defs", "batch_assets.BatchPipelineComponent", "my_pipeline")
    assert result.returncode == 0, result.stdout + result.stderr
    folder = project / "batch_assets/defs/my_pipeline"
    assert (
        (folder / "defs.yaml").read_text().startswith("type: batch_assets.BatchPipelineComponent\n")
    )
    assert (folder / "requests.jsonl").exists()

    result = dg(project, "check", "defs")
    assert result.returncode == 0, result.stdout + result.stderr

    result = dg(project, "list", "defs", "--json")
    assert result.returncode == 0, result.stderr
    listed_defs = json.loads(result.stdout)
    assets = {asset["asset_key"] for asset in listed_defs["assets"]}
    assert {"my_pipeline_requests", "my_pipeline_batch", "support_ticket_summaries_batch"} <= assets
    assert [sensor["name"] for sensor in listed_defs["sensors"]] == ["batch_completion_sensor"]


def test_check_defs_names_file_line_and_attribute(project: Path) -> None:
    folder = project / "batch_assets/defs/bad"
    folder.mkdir()
    (folder / "defs.yaml").write_text(
        textwrap.dedent("""\
            type: batch_assets.BatchPipelineComponent
            attributes:
              name: bad
              source:
                jsonl_file: requests.jsonl
              max_attempts: three
        """)
    )
    result = dg(project, "check", "defs")
    assert result.returncode == 1
    assert f"{folder / 'defs.yaml'}:6 - attributes.max_attempts:" in result.stdout + result.stderr
