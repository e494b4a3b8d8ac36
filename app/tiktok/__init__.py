"""The TikTok adapter: the only code that knows how TikTok's Business API is spoken.

`client.TikTokClient` talks to TikTok (or the sandbox, which speaks the same protocol); `models` are what it
returns; `errors` is its error taxonomy. Services depend on these, never on httpx or on TikTok's JSON.
"""
