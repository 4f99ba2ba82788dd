"""An offline server that speaks OpenAI's Files and Batches protocol.

`create_app` and `Simulation` are imported on first use, so that a process that needs only the
engine (the batch engine's helper process) does not import the web framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batch_assets.local_api.app import create_app
    from batch_assets.local_api.settings import Simulation

__all__ = ["Simulation", "create_app"]

_HOMES = {
    "create_app": "batch_assets.local_api.app",
    "Simulation": "batch_assets.local_api.settings",
}


def __getattr__(name: str) -> Any:
    """`create_app` and `Simulation`, imported from their modules on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
