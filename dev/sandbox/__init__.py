"""A fake of TikTok's Spark Ads post endpoints, for tests and local use (`python -m dev.sandbox`).

`DEMO_CODES` are the creators' codes it knows; `OWN_POSTS` the brand's own posts (D1, no code), which
`identity/video/info/` answers for their identity. The README lists both.
"""

from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import DEMO_CODES, OWN_POSTS, DemoCode, OwnPost

__all__ = ["DEMO_CODES", "OWN_POSTS", "DemoCode", "OwnPost", "create_sandbox_app"]
