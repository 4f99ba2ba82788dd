"""An offline server that speaks OpenAI's Files and Batches protocol."""

from batch_assets.local_api.app import create_app
from batch_assets.local_api.settings import Simulation

__all__ = ["Simulation", "create_app"]
