"""`OpenAIBatchResource`: the one place the pipeline talks to a Batch API."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from batch_assets.core.batch_client import BackendSettings, BatchClient


class OpenAIBatchResource(dg.ConfigurableResource["OpenAIBatchResource"]):
    """OpenAI's Files and Batches API, or Azure OpenAI's, or any compatible server."""

    api_key: str | None = Field(
        default=None, description="API key; pass dg.EnvVar('OPENAI_API_KEY'), never a literal."
    )
    base_url: str | None = Field(
        default=None, description="e.g. http://127.0.0.1:8765/v1 for the local Batch API."
    )
    organization: str | None = Field(default=None, description="Sent as OpenAI-Organization.")
    project: str | None = Field(default=None, description="Sent as OpenAI-Project.")
    azure_endpoint: str | None = Field(
        default=None, description="Azure OpenAI endpoint; when set, the client is AzureOpenAI."
    )
    api_version: str | None = Field(default=None, description="Azure OpenAI API version.")
    timeout_seconds: float = Field(default=600.0, description="Per HTTP request.")
    max_retries: int = Field(
        default=5, description="SDK retries for connection errors, 408, 409, 429 and 5xx."
    )

    _client: BatchClient | None = PrivateAttr(default=None)

    def backend(self) -> BackendSettings:
        """The connection settings as the core layer takes them."""
        return BackendSettings(
            api_key=self.api_key,
            base_url=self.base_url,
            organization=self.organization,
            project=self.project,
            azure_endpoint=self.azure_endpoint,
            api_version=self.api_version,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
        )

    @property
    def host(self) -> str:
        """Where the calls go, safe for metadata and logs."""
        return self.backend().host

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._client = BatchClient.connect(self.backend())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> BatchClient:
        """The batch client, built when the run or tick starts."""
        if self._client is None:
            self._client = BatchClient.connect(self.backend())
        return self._client
