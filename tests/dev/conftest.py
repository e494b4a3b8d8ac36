"""The sandbox is tested through the real TikTok client: the adapter's fixtures, shared."""

from tests.tiktok.conftest import _no_backoff_waits, clock, sandbox_app, sandbox_http, scripted, sent, tiktok

__all__ = ["_no_backoff_waits", "clock", "sandbox_app", "sandbox_http", "scripted", "sent", "tiktok"]
