"""The local Batch API as a real process on a free loopback port, for tests."""

from __future__ import annotations

import time
from typing import Any

from openai import OpenAI

from batch_assets.local_api.process import LocalBatchAPIProcess


class LocalBatchAPI(LocalBatchAPIProcess):
    """The server process, plus the openai SDK pointed at it."""

    def client(self, **options: Any) -> OpenAI:
        """The real openai SDK pointed at this server."""
        options.setdefault("api_key", self.api_key or "sk-local-test")
        options.setdefault("max_retries", 0)
        return OpenAI(base_url=self.base_url, **options)


def wait_for(predicate: Any, *, timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Call `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value {value!r}")
        time.sleep(interval)
