"""The TikTok adapter: the only code that knows how TikTok's Business API is spoken.

`client.TikTokClient` talks to TikTok (or the sandbox, which speaks the same protocol): the calls, retries and
the deadline. `classify` reads a failure into the taxonomy of `errors`; `parse` reads a success into `models`.
Services depend on these, never on httpx or on TikTok's JSON.

It is the bottom layer: it imports nothing from the rest of `app` (an import-linter contract in pyproject.toml
says so), and it speaks TikTok's vocabulary (`errors.TikTokRefusal`), not this service's API reasons. What a
TikTok failure means for this service's callers is decided above it (`app.kit.tiktok_problems`, the domains).
"""
