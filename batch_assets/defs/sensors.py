"""The one sensor that watches every pipeline's batches."""

import dagster as dg

from batch_assets.pipeline.sensor import batch_completion_sensor

defs = dg.Definitions(sensors=[batch_completion_sensor])
