"""A fake of TikTok's Spark Ads post endpoints, for tests and local use (`python -m app.tiktok.sandbox`)."""

from app.tiktok.sandbox.app import create_sandbox_app
from app.tiktok.sandbox.seed import DEMO_CODES, DemoCode

__all__ = ["DEMO_CODES", "DemoCode", "create_sandbox_app"]
