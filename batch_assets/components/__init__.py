"""Dagster components of batch-assets: pipelines declared in a `defs.yaml`."""
