"""The core layer: pure Python and polars, no Dagster."""
