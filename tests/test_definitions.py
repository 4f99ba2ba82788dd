"""The code location loads cleanly, as `dagster dev` and `dg` load it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from batch_assets.definitions import defs
from batch_assets.project import PROJECT_ROOT

EXAMPLES = {
    "product_reviews": [
        "product_reviews",
        "review_sentiment_requests",
        "review_sentiment_batch",
        "review_sentiment_output",
        "review_sentiment_errors",
        "review_sentiment_results",
    ],
    "support_tickets": [
        "support_ticket_summaries_source_file",
        "support_ticket_summaries_requests",
        "support_ticket_summaries_batch",
        "support_ticket_summaries_output",
        "support_ticket_summaries_errors",
    ],
    "catalog_embeddings": [
        "catalog_embeddings_requests",
        "catalog_embeddings_batch",
        "catalog_embeddings_output",
        "catalog_embeddings_errors",
    ],
    "monthly_reviews": [
        "monthly_reviews",
        "monthly_review_topics_requests",
        "monthly_review_topics_batch",
        "monthly_review_topics_output",
        "monthly_review_topics_errors",
        "monthly_review_topics_results",
    ],
}


def test_definitions_validate_and_hold_the_four_examples() -> None:
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert {group: sorted(keys) for group, keys in groups.items()} == {
        group: sorted(keys) for group, keys in EXAMPLES.items()
    }


def test_lineage_runs_from_upstream_data_to_results() -> None:
    graph = defs().resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {key.to_user_string() for key in graph.get(dg.AssetKey(name)).parent_keys}

    assert parents("review_sentiment_requests") == {"product_reviews"}
    assert parents("review_sentiment_batch") == {"review_sentiment_requests"}
    assert parents("review_sentiment_output") == {"review_sentiment_batch"}
    assert parents("review_sentiment_errors") == {"review_sentiment_batch"}
    assert parents("review_sentiment_results") == {
        "product_reviews",
        "review_sentiment_output",
        "review_sentiment_errors",
    }
    assert parents("support_ticket_summaries_requests") == {"support_ticket_summaries_source_file"}


def test_sensor_runs_and_schedule_is_stopped_by_default() -> None:
    definitions = defs()
    sensor = definitions.resolve_sensor_def("batch_completion_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = definitions.resolve_schedule_def("review_sentiment_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 6 * * *"


def test_loading_raises_no_warning_from_our_code() -> None:
    script = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    from batch_assets.definitions import defs\n"
        "    defs()\n"
        "ours = [f'{w.message} @ {w.filename}' for w in caught if 'batch_assets' in w.filename]\n"
        "print(ours)\n"
        "assert not ours, ours\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dg_lists_the_examples() -> None:
    venv = Path(sys.prefix)
    result = subprocess.run(
        [str(venv / "bin" / "dg"), "list", "defs", "--json"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "VIRTUAL_ENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assets = {asset["asset_key"]: asset["group_name"] for asset in listed["assets"]}
    assert assets == {key: group for group, keys in EXAMPLES.items() for key in keys}
    assert [sensor["name"] for sensor in listed["sensors"]] == ["batch_completion_sensor"]
