"""Browser tests: Playwright drives Chromium through the Dagster UI of `make run`."""
