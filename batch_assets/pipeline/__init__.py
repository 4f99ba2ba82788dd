"""The Dagster layer: the OpenAI resource, the pipeline factory, the completion sensor."""
