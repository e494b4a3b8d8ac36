"""A fake of TikTok's Spark Ads post endpoints, for tests and local use (`python -m dev.sandbox`).

`DEMO_CODES` are the creators' codes it seeds, one per situation; `find_demo_code` finds those and the bulk family
`#SBX+bulk/<n>=` (10,000 valid codes for batches); `OWN_POSTS` are the brand's own posts (D1, no code), which
`identity/video/info/` answers for their identity. The README lists them all.
"""

from dev.sandbox.app import create_sandbox_app
from dev.sandbox.seed import DEMO_CODES, OWN_POSTS, DemoCode, OwnPost, find_demo_code

__all__ = ["DEMO_CODES", "OWN_POSTS", "DemoCode", "OwnPost", "create_sandbox_app", "find_demo_code"]
