"""A fake of TikTok's Spark Ads post endpoints, for tests and local use (`python -m dev.sandbox`)."""

from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import DEMO_CODES, DemoCode

__all__ = ["DEMO_CODES", "DemoCode", "create_sandbox_app"]
