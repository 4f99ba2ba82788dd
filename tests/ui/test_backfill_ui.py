"""In the UI of `make run`, a user backfills three months of the partitioned example and sees
each month's results and the batches' progress plot."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from playwright.sync_api import Locator, Page, expect

from batch_assets.defs.product_reviews.source import REVIEWS_CSV
from tests.local_api_server import wait_for
from tests.ui.dagster_ui import DagsterUI

GROUP = "monthly_reviews"
PIPELINE = "monthly_review_topics"
# What the user ticks: the month's reviews, its requests and its batch; the completion sensor
# materializes the output, errors and results when each month's batch ends.
TICKED = [GROUP, f"{PIPELINE}_requests", f"{PIPELINE}_batch"]
PARTITIONS = ["2026-01-01", "2026-02-01", "2026-03-01"]
PARTITION_RANGE = "[2026-01-01...2026-03-01]"
# Each batch answers this many requests, then stays in progress until the test lets it go: the
# sensor records that progress whatever the machine's speed.
HELD_AT = 2
PIPELINE_SECONDS = 600

EVENTS = """
query Events($key: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $key) {
    ... on Asset {
      assetMaterializations(partitions: $partitions) { partition }
      assetObservations(partitions: $partitions) {
        partition
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""

expect.set_options(timeout=60_000)


class Screenshots:
    """Numbered full-page screenshots in tmp_path, to see what the browser saw."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page, self.folder, self.count = page, folder, 0

    def __call__(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=True)


def asset_row(page: Page, asset: str) -> Locator:
    """The asset's row in a list of assets: the innermost block with its link and a checkbox."""
    link = page.get_by_role("link", name=re.compile(rf"^{re.escape(asset)}\b"))
    return page.locator("div").filter(has=link).filter(has=page.get_by_role("checkbox")).last


def events(ui: DagsterUI, asset: str) -> dict[str, Any]:
    """The asset's materializations and observations of the backfilled partitions."""
    data = ui.graphql(EVENTS, {"key": {"path": [asset]}, "partitions": PARTITIONS})
    return data["assetOrError"]


def progress(ui: DagsterUI) -> set[tuple[str, int, int]]:
    """(partition, completed, total) of each progress observation of the batch asset."""
    found = set()
    for observation in events(ui, f"{PIPELINE}_batch")["assetObservations"]:
        values = {e["label"]: e.get("intValue") for e in observation["metadataEntries"]}
        if "completed" in values:
            found.add((observation["partition"], values["completed"], values["total"]))
    return found


def wait_until(ui: DagsterUI, what: str, predicate: Callable[[], Any]) -> Any:
    """Poll until `predicate` holds; on timeout, fail with the end of Dagster's log."""
    try:
        return wait_for(predicate, timeout=PIPELINE_SECONDS, interval=1)
    except AssertionError as error:
        raise AssertionError(f"{what}: {error}\n--- launcher log ---\n{ui.log_tail()}") from None


def test_a_backfill_launched_in_the_ui_ends_with_each_months_results_and_a_progress_plot(
    dagster_ui: DagsterUI, page: Page, tmp_path: Path
) -> None:
    shot = Screenshots(page, tmp_path)
    dagster_ui.api.configure(answer_at_most=HELD_AT)

    # The group's assets as a list: tick the reviews, requests and batch, and materialize them.
    page.goto(f"{dagster_ui.url}/locations/batch_assets/asset-groups/{GROUP}/list")
    for asset in TICKED:
        row = asset_row(page, asset)
        row.locator("label").filter(has=page.get_by_role("checkbox")).click()
        expect(row.get_by_role("checkbox")).to_be_checked()
    shot("ticked")
    page.get_by_role("button", name="Materialize selected").click()

    # The launch dialog: all partitions in view, then type the three months.
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Launch runs to materialize {len(TICKED)} assets")).to_be_visible()
    date_range = re.compile(r"^(Last \d+ days|This month|Last month|All time|Custom…)( |$)")
    dialog.get_by_role("button", name=date_range).click()
    page.get_by_role("menuitem", name="All time").click()
    partition_box = dialog.get_by_placeholder(re.compile(r"^ex: "))
    partition_box.fill(PARTITION_RANGE)
    partition_box.press("Enter")
    expect(dialog.get_by_text(f"{len(PARTITIONS)} partitions", exact=True)).to_be_visible()
    shot("launch-dialog")
    dialog.get_by_role("button", name="Launch backfill").click()
    expect(page.get_by_text(re.compile(r"^Created backfill"))).to_be_visible()
    shot("backfill-created")

    # Every month's batch is submitted and held in progress; the sensor records that progress.
    def held() -> bool:
        seen = {(partition, completed) for partition, completed, _ in progress(dagster_ui)}
        return all((partition, HELD_AT) in seen for partition in PARTITIONS)

    wait_until(dagster_ui, "each batch observed in progress", held)
    dagster_ui.api.configure(answer_at_most=None)

    def results_materialized() -> bool:
        found = events(dagster_ui, f"{PIPELINE}_results")["assetMaterializations"]
        return {m["partition"] for m in found} >= set(PARTITIONS)

    wait_until(dagster_ui, "each month's results materialized", results_materialized)
    # What the plot shows: each month held at HELD_AT, then all its requests answered.
    assert {p for p, done, total in progress(dagster_ui) if done == total} == set(PARTITIONS)

    # The results' partitions: the three months materialized, the others missing.
    page.get_by_role("link", name=re.compile(rf"^{PIPELINE}_results\b")).click()
    page.get_by_role("tab", name="Partitions").click()
    expect(page.get_by_text(f"Materialized ({len(PARTITIONS)})", exact=True)).to_be_visible()
    page.get_by_text(re.compile(r"^Missing \(\d+\)$")).click()  # untick: materialized ones only
    partition_list = page.get_by_title(re.compile(r"^\d{4}-\d\d-\d\d$"))
    expect(partition_list).to_have_count(len(PARTITIONS))
    for partition in PARTITIONS:
        expect(page.get_by_title(partition, exact=True)).to_be_visible()
    shot("results-partitions")

    # January's materialization and its metadata: one row per review of the month.
    january_reviews = pl.read_csv(REVIEWS_CSV).filter(
        pl.col("review_date").str.starts_with("2026-01")
    )
    page.get_by_title(PARTITIONS[0], exact=True).click()
    key = page.get_by_role("cell", name="dagster/row_count", exact=True)
    row_count = page.get_by_role("row").filter(has=key)
    expect(row_count.get_by_role("cell").nth(1)).to_have_text(str(january_reviews.height))
    shot("january-metadata")

    # The batch asset's metadata plotted by event: the progress observations' `completed`.
    page.goto(f"{dagster_ui.url}/assets/{PIPELINE}_batch")
    page.get_by_role("button", name="Plots").click()
    page.get_by_role("button", name="Events").click()
    title = page.get_by_text("completed", exact=True)
    chart = page.locator("div").filter(has=title).filter(has=page.locator("canvas")).last
    expect(title).to_be_visible()
    expect(chart.locator("canvas")).to_be_visible()
    chart.scroll_into_view_if_needed()
    shot("progress-plot")
