"""Declarative automation: an eager pipeline is requested when its upstream data changes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from batch_assets.core.request_template import RequestTemplate
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import DataFrameSource
from tests.pipeline.harness import resource_for

TEMPLATE = RequestTemplate(
    endpoint="/v1/chat/completions", model="gpt-4o-mini", user_template="{text}"
)


def test_eager_submits_when_the_upstream_rows_change_and_leaves_the_download_to_the_sensor(
    tmp_path: Path,
) -> None:
    @dg.asset
    def rows() -> None:
        """Upstream rows; the test only records that they changed."""

    defs = dg.Definitions.merge(
        build_batch_pipeline(
            "t",
            DataFrameSource(upstream="rows", template=TEMPLATE),
            automation_condition=dg.AutomationCondition.eager(),
            storage_dir=tmp_path,
        ),
        dg.Definitions(assets=[rows], resources={"openai_batch": resource_for("http://x/v1")}),
    )
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0
        instance.report_runless_asset_event(dg.AssetMaterialization("rows"))
        second = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        requested = {
            name
            for name in ("t_requests", "t_batch", "t_output", "t_errors", "t_results")
            if second.get_num_requested(dg.AssetKey(name))
        }
        assert requested == {"t_requests", "t_batch"}
