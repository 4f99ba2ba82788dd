"""The Dagster UI a browser test drives, and what the test asks its webserver directly."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.local_api_server import LocalBatchAPI


@dataclass
class DagsterUI:
    """`make run`'s launcher serving the UI, and the local Batch API its pipelines call."""

    url: str
    api: LocalBatchAPI
    log_path: Path

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The `data` of a GraphQL answer of the webserver."""
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def log_tail(self, lines: int = 60) -> str:
        """The end of what the launcher and Dagster wrote, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
